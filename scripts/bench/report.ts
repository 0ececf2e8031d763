/** Turns the bench's raw timings into the numbers the issue asks for, and prints them. */
import type { LoadTimings } from "./load.ts";
import type { BenchOptions } from "./options.ts";
import { percentile, round } from "./stats.ts";

/** Everything one bench run measured. */
export interface BenchResult {
  backend: string;
  jobs: number;
  conversations: number;
  concurrency: number;
  latency_ms: number;
  /** First enqueue to last done. */
  duration_s: number;
  jobs_per_s: number;
  ideal_jobs_per_s: number | null;
  ratio_pct: number | null;
  /** How fast the front door took the jobs (first to last enqueue). */
  enqueue_per_s: number | null;
  p50_ms: number;
  p99_ms: number;
  max_backend_concurrency: number;
  /** Backend busy time over the run's duration: the slots actually kept full on average. */
  mean_backend_concurrency: number;
  retries: number;
  /**
   * Where the run's time went beyond the ideal, in ms of the run: idle places
   * summed and divided by the concurrency, by phase (see {@linkcode lostTime}).
   */
  lost_ms: LostTime;
  /** CPU seconds each process used during the run. */
  cpu_s: Record<string, number>;
  /** AWS calls per job, by side and command (AWS only), from the first submission to the last job done. */
  calls_per_job?: { front_door: Record<string, number>; worker: Record<string, number> };
}

/** What the stand-in and the watch counted besides the timings. */
export interface Counters {
  maxInFlight: number;
  retries: number;
}

/** The run's time beyond the ideal, by phase, in ms of the run. */
export interface LostTime {
  /** From the first enqueue to the first backend call. */
  before_first_call: number;
  /** Places idle from the first call until every place was busy. */
  ramp: number;
  /** Places idle between jobs, from then until the last call started. */
  between_jobs: number;
  /** Places idle while the last calls ran. */
  tail: number;
  /** From the last call's end to its job's success being stored. */
  after_last_call: number;
  /** Calls that took longer than the backend's latency (the stand-in's own overhead). */
  slow_calls: number;
}

/**
 * Splits the idle place-time of a run into its phases, each divided by the
 * concurrency, so the parts add up to the run's duration minus the ideal.
 */
export function lostTime(
  spans: readonly { start: number; end: number }[],
  options: { concurrency: number; latencyMs: number; firstEnqueue: number; lastDone: number },
): LostTime {
  const { concurrency, latencyMs, firstEnqueue, lastDone } = options;
  const events = spans.flatMap((s) => [{ at: s.start, step: 1 }, { at: s.end, step: -1 }])
    .sort((a, b) => a.at - b.at || a.step - b.step);
  const firstStart = Math.min(...spans.map((s) => s.start));
  const lastStart = Math.max(...spans.map((s) => s.start));
  const lastEnd = Math.max(...spans.map((s) => s.end));
  // Every place is busy from the first moment as many calls are in flight as there are places.
  let fullAt = lastStart;
  let inFlight = 0;
  for (const event of events) {
    inFlight += event.step;
    if (inFlight >= concurrency) {
      fullAt = Math.min(event.at, lastStart);
      break;
    }
  }
  inFlight = 0;
  let ramp = 0;
  let between = 0;
  let tail = 0;
  for (let i = 0; i < events.length - 1; i++) {
    inFlight += events[i].step;
    const idle = Math.max(0, concurrency - inFlight) * (events[i + 1].at - events[i].at);
    const at = events[i].at;
    if (at < fullAt) ramp += idle;
    else if (at < lastStart) between += idle;
    else tail += idle;
  }
  const busy = spans.reduce((sum, s) => sum + s.end - s.start, 0);
  return {
    before_first_call: round(firstStart - firstEnqueue, 1),
    ramp: round(ramp / concurrency, 1),
    between_jobs: round(between / concurrency, 1),
    tail: round(tail / concurrency, 1),
    after_last_call: round(lastDone - lastEnd, 1),
    slow_calls: round((busy - spans.length * latencyMs) / concurrency, 1),
  };
}

/** Computes the result of a run. */
export function summarize(
  options: BenchOptions,
  timings: LoadTimings,
  counters: Counters,
): BenchResult {
  const enqueued = [...timings.enqueuedAt.values()];
  const firstEnqueue = Math.min(...enqueued);
  const lastEnqueue = Math.max(...enqueued);
  const lastDone = Math.max(...timings.doneAt.values());
  const durationMs = lastDone - firstEnqueue;
  const waits = [...timings.enqueuedAt].map(([id, at]) => timings.doneAt.get(id)! - at)
    .sort((a, b) => a - b);
  const jobsPerS = options.jobs / (durationMs / 1000);
  const ideal = options.latencyMs > 0 ? options.concurrency / (options.latencyMs / 1000) : null;
  return {
    backend: options.backend,
    jobs: options.jobs,
    conversations: options.conversations,
    concurrency: options.concurrency,
    latency_ms: options.latencyMs,
    duration_s: round(durationMs / 1000, 3),
    jobs_per_s: round(jobsPerS, 1),
    ideal_jobs_per_s: ideal === null ? null : round(ideal, 1),
    ratio_pct: ideal === null ? null : round((100 * jobsPerS) / ideal, 1),
    enqueue_per_s: lastEnqueue > firstEnqueue
      ? round((options.jobs - 1) / ((lastEnqueue - firstEnqueue) / 1000), 1)
      : null,
    p50_ms: Math.round(percentile(waits, 50)),
    p99_ms: Math.round(percentile(waits, 99)),
    max_backend_concurrency: counters.maxInFlight,
    mean_backend_concurrency: round(
      timings.spans.reduce((sum, s) => sum + s.end - s.start, 0) / durationMs,
      2,
    ),
    retries: counters.retries,
    cpu_s: timings.cpuSeconds,
    lost_ms: lostTime(timings.spans, {
      concurrency: options.concurrency,
      latencyMs: options.latencyMs,
      firstEnqueue,
      lastDone,
    }),
    calls_per_job: timings.calls && {
      front_door: perJob(timings.calls.frontDoor, options.jobs),
      worker: perJob(timings.calls.worker, options.jobs),
    },
  };
}

/** Each command's calls per job, rounded to hundredths, busiest first. */
function perJob(calls: ReadonlyMap<string, number>, jobs: number): Record<string, number> {
  return Object.fromEntries(
    [...calls].sort((a, b) => b[1] - a[1]).map(([name, count]) => [
      name.replace(/Command$/, ""),
      round(count / jobs, 2),
    ]),
  );
}

/** The sum of a side's calls per job. */
export function totalCalls(calls: Record<string, number>): number {
  return round(Object.values(calls).reduce((sum, n) => sum + n, 0), 2);
}

/** Prints the throughput table. */
export function printThroughput(result: BenchResult): void {
  const rows: [string, string][] = [
    ["backend", result.backend],
    ["jobs", `${result.jobs} over ${result.conversations} conversations`],
    ["concurrency", String(result.concurrency)],
    ["backend latency", `${result.latency_ms} ms`],
    ["duration", `${result.duration_s} s (first enqueue to last done)`],
    ["jobs/s", String(result.jobs_per_s)],
    [
      "ideal jobs/s",
      result.ideal_jobs_per_s === null
        ? "n/a (latency 0)"
        : `${result.ideal_jobs_per_s} (concurrency ÷ latency)`,
    ],
    ["ratio", result.ratio_pct === null ? "n/a" : `${result.ratio_pct} % (target ≥ 95 %)`],
    ["enqueue-to-done p50", `${result.p50_ms} ms`],
    ["enqueue-to-done p99", `${result.p99_ms} ms`],
    ["front door took", result.enqueue_per_s === null ? "n/a" : `${result.enqueue_per_s} jobs/s`],
    ["max backend concurrency", String(result.max_backend_concurrency)],
    ["mean backend concurrency", String(result.mean_backend_concurrency)],
    ["retried attempts", String(result.retries)],
  ];
  const lost = Object.entries(result.lost_ms).map(([phase, ms]) =>
    `${phase.replaceAll("_", " ")} ${ms}`
  );
  rows.push(["time lost (ms)", lost.join(", ")]);
  const cpu = Object.entries(result.cpu_s).map(([name, seconds]) =>
    `${name} ${seconds} s (${Math.round((100 * seconds) / result.duration_s)} %)`
  );
  rows.push(["CPU used (% of one core)", cpu.join(", ")]);
  if (result.calls_per_job) {
    for (const [side, calls] of Object.entries(result.calls_per_job)) {
      const detail = Object.entries(calls).map(([name, n]) => `${name} ${n}`).join(", ");
      rows.push([`AWS calls/job, ${side.replace("_", " ")}`, `${totalCalls(calls)}: ${detail}`]);
    }
  }
  printRows(rows);
}

/** Prints label/value rows, the labels aligned. */
export function printRows(rows: [string, string][]): void {
  const width = Math.max(...rows.map(([label]) => label.length));
  for (const [label, value] of rows) console.log(`  ${label.padEnd(width)}  ${value}`);
}
