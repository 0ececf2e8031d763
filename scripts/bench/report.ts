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
}

/** What the stand-in and the watch counted besides the timings. */
export interface Counters {
  maxInFlight: number;
  busyMs: number;
  retries: number;
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
    mean_backend_concurrency: round(counters.busyMs / durationMs, 2),
    retries: counters.retries,
  };
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
    ["ratio", result.ratio_pct === null ? "n/a" : `${result.ratio_pct} % (target ≥ 90 %)`],
    ["enqueue-to-done p50", `${result.p50_ms} ms`],
    ["enqueue-to-done p99", `${result.p99_ms} ms`],
    ["front door took", result.enqueue_per_s === null ? "n/a" : `${result.enqueue_per_s} jobs/s`],
    ["max backend concurrency", String(result.max_backend_concurrency)],
    ["mean backend concurrency", String(result.mean_backend_concurrency)],
    ["retried attempts", String(result.retries)],
  ];
  printRows(rows);
}

/** Prints label/value rows, the labels aligned. */
export function printRows(rows: [string, string][]): void {
  const width = Math.max(...rows.map(([label]) => label.length));
  for (const [label, value] of rows) console.log(`  ${label.padEnd(width)}  ${value}`);
}
