/** Issue 13's figures, each beside its goal, for the bench's closing table. */
import { type LambdaColdResult, medianCold } from "./lambda_cold.ts";
import type { AwsWaitResult, QueuedPathResult, StreamResult } from "./latency.ts";
import type { BacklogResult } from "./backlog.ts";
import type { FairnessResult } from "./fairness.ts";
import type { MemoryResult } from "./memory.ts";
import type { BenchResult } from "./report.ts";
import { round } from "./stats.ts";

/** What Portkey's gateway, a plain synchronous proxy, added at p50 in issue 13's run (ms). */
export const PORTKEY_ADDED_MS = 6;

/** One figure and its goal. */
export interface Figure {
  name: string;
  value: string;
  goal: string;
  /** Undefined when the run did not measure it. */
  met?: boolean;
}

/** Everything the sections measured; absent sections were not run. */
export interface BenchFigures {
  queued?: QueuedPathResult;
  wait?: AwsWaitResult;
  streams?: StreamResult[];
  lambda?: LambdaColdResult;
  throughput?: BenchResult;
  memory?: MemoryResult;
  backlogs?: BacklogResult[];
  fairness?: FairnessResult[];
}

/** The figures with their goals. */
export function figuresWithGoals(results: BenchFigures): Figure[] {
  const figures: Figure[] = [];
  const { queued, wait, streams, lambda, throughput, memory, backlogs, fairness } = results;
  if (queued) {
    figures.push({
      name: "queued completion, added p50 (embedded)",
      value: `${queued.gateway_added_ms} ms (a bare forwarding proxy: ${queued.proxy_added_ms} ms)`,
      goal: `≤ ${2 * PORTKEY_ADDED_MS} ms: 2 × a plain proxy's (Portkey's ${PORTKEY_ADDED_MS} ms)`,
      met: queued.gateway_added_ms <= 2 * PORTKEY_ADDED_MS,
    });
  }
  if (wait) {
    figures.push({
      name: "completing write to answer, p50 (aws)",
      value: `${wait.p50_ms} ms (p90 ${wait.p90_ms} ms)`,
      goal: "≤ 60 ms",
      met: wait.p50_ms <= 60,
    });
  }
  for (const stream of streams ?? []) {
    if (stream.backend === "embedded") {
      figures.push({
        name: "stream, token to client p50 (embedded)",
        value: `${stream.delay_p50_ms} ms (p90 ${stream.delay_p90_ms} ms)`,
        goal: "≤ 5 ms",
        met: stream.delay_p50_ms <= 5,
      });
    } else {
      figures.push({
        name: `stream, gap between pieces p90 (${stream.backend})`,
        value: `${stream.gap_p90_ms} ms (p50 ${stream.gap_p50_ms}, max ${stream.gap_max_ms})`,
        goal: "≤ 100 ms",
        met: stream.gap_p90_ms <= 100,
      });
    }
  }
  if (lambda && !("skipped" in lambda)) {
    const size = lambda.gateway.bytes / lambda.floor.bytes;
    const cold = medianCold(lambda.gateway) / medianCold(lambda.floor);
    figures.push({
      name: "lambda bundle size vs floor",
      value: `${kB(lambda.gateway.bytes)} vs ${kB(lambda.floor.bytes)} (${round(size, 2)}×)`,
      goal: "≤ 1.2×",
      met: size <= 1.2,
    });
    figures.push({
      name: "lambda cold start vs floor (median)",
      value: `${medianCold(lambda.gateway)} ms vs ${medianCold(lambda.floor)} ms (${
        round(cold, 2)
      }×)`,
      goal: "≤ 1.2×",
      met: cold <= 1.2,
    });
  }
  if (throughput?.ratio_pct != null) {
    figures.push({
      name: `worker throughput vs ideal (${throughput.backend})`,
      value: `${throughput.ratio_pct} %`,
      goal: "≥ 95 % (issue 13, phase 2)",
      met: throughput.ratio_pct >= 95,
    });
  }
  if (memory) {
    figures.push({
      name: `worker RSS, ${memory.concurrency} in flight, ${memory.queued} queued (aws)`,
      value:
        `${memory.steady_mib} MiB (idle ${memory.idle_mib}, first ${memory.concurrency} at once ${memory.first_full_mib})`,
      goal: "< 100 MiB",
      met: memory.steady_mib < 100,
    });
  }
  for (const backlog of backlogs ?? []) {
    figures.push({
      name: `backlog deliveries per job (${backlog.backend})`,
      value:
        `${backlog.deliveries_per_job} (${backlog.jobs} jobs waited ${backlog.waited_intervals} ` +
        `line checks; ${backlog.line_checks} line checks delivered)`,
      goal: "≤ 1.1 (issue 26)",
      met: backlog.deliveries_per_job <= 1.1,
    });
    figures.push({
      name: `backlog drain vs ideal (${backlog.backend})`,
      value: `${backlog.ratio_pct} % (${backlog.drain_s} s, ideal ${backlog.ideal_s} s)`,
      goal: "reported: the worker's pace",
    });
  }
  for (const fair of fairness ?? []) {
    const value = `${fair.quiet_wait_p50_ms} ms = ${fair.quiet_wait_runs} runs of ` +
      `${fair.run_ms} ms (first ${fair.quiet_wait_first_ms} ms; first come, first served ` +
      `${fair.fifo_wait_ms} ms; A still had ${fair.flood_waiting_at_end} waiting)`;
    figures.push(
      fair.backend === "embedded"
        ? {
          name: "fair share: B's median wait behind A's flood (embedded)",
          value,
          goal: "≤ 2 runs, A's backlog still draining (issue 24)",
          met: fair.quiet_wait_runs <= 2 && fair.flood_waiting_at_end > 0,
        }
        : {
          name: "fair share: B's median wait behind A's flood (aws emulators)",
          value,
          goal: "reported: the emulators' SQS has no fair queues",
        },
    );
  }
  return figures;
}

/** Prints the figures as a Markdown table, as the README shows them. */
export function printFigures(figures: Figure[]): void {
  console.log("| figure | measured | goal | met |");
  console.log("| --- | --- | --- | --- |");
  for (const f of figures) {
    const met = f.met === undefined ? "–" : f.met ? "yes" : "**no**";
    console.log(`| ${f.name} | ${f.value} | ${f.goal} | ${met} |`);
  }
}

function kB(bytes: number): string {
  return `${Math.round(bytes / 1000)} kB`;
}
