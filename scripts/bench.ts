/**
 * `deno task bench`: issue 13's figures, each with its goal.
 *
 * - latency: the added latency of a queued non-streamed completion on the
 *   embedded backend, against calling the stand-in directly and against a
 *   bare forwarding proxy;
 * - wait: on the AWS backend (DynamoDB Local, Moto for SQS), the time from the
 *   worker's completing write to the client's answer;
 * - stream: how a streamed reply's pieces reach the client, on both backends;
 * - lambda: the Lambda bundle's size and cold start against the bare
 *   dependencies' floor, both built here;
 * - throughput: the worker against a backend with a fixed latency;
 * - memory: the worker's resident memory with many places, all busy;
 * - backlog: jobs that waited through several line checks, drained by one
 *   worker: deliveries per job and the drain against the ideal, both backends;
 * - fairness: key A floods the queue, key B sends jobs one after another: B's
 *   wait against one job's run while A's backlog drains, both backends.
 *
 * Settings: BENCH_SECTIONS (latency,wait,stream,lambda,throughput,memory,backlog,fairness: all
 * by default), BENCH_SQS (fast: the bench's SQS stand-in; moto), BENCH_LATENCY_REQUESTS (300),
 * BENCH_WAIT_REQUESTS (200), BENCH_STREAMS (5), BENCH_COLD_RUNS (9); for the
 * throughput run BENCH_BACKEND (aws | embedded; BACKEND=embedded works too),
 * BENCH_JOBS (320), BENCH_LATENCY_MS (300), VLLM_CONCURRENCY (16),
 * BENCH_CONVERSATIONS (one per job), BENCH_SUBMITTERS (16),
 * BENCH_AWS_ENDPOINT_URL (a Moto already running on 127.0.0.1, instead of
 * fresh emulators); for the memory run BENCH_MEMORY_CONCURRENCY (64),
 * BENCH_MEMORY_QUEUED (300), BENCH_MEMORY_LATENCY_MS (5000); for the backlog run
 * BENCH_BACKLOG_CONVERSATIONS (40), BENCH_BACKLOG_MESSAGES (10); for the fairness
 * run BENCH_FAIR_FLOOD (200), BENCH_FAIR_QUIET (10), BENCH_FAIR_CONCURRENCY (2),
 * BENCH_FAIR_LATENCY_MS (200).
 */
import { type BenchEmulators, startBenchEmulators } from "./bench/emulators.ts";
import { type BenchFigures, figuresWithGoals, printFigures } from "./bench/goals.ts";
import { measureBacklog } from "./bench/backlog.ts";
import { measureFairness } from "./bench/fairness.ts";
import { measureLambdaCold } from "./bench/lambda_cold.ts";
import { measureAwsWait, measureQueuedPath, measureStreams } from "./bench/latency.ts";
import { runLoad } from "./bench/load.ts";
import { measureWorkerMemory } from "./bench/memory.ts";
import { type BenchOptions, readBenchOptions } from "./bench/options.ts";
import { printRows, printThroughput, summarize } from "./bench/report.ts";
import { startBenchStack } from "./bench/stack.ts";

/** Callers at once in the AWS wait run: the front door's one read loop serves them all. */
const WAIT_CLIENTS = 4;

async function runThroughput(options: BenchOptions, emulators: () => Promise<BenchEmulators>) {
  console.log(
    `\n## Throughput: ${options.jobs} jobs on ${options.backend}, backend latency ` +
      `${options.latencyMs} ms, VLLM_CONCURRENCY=${options.concurrency}`,
  );
  if (options.conversations < options.concurrency) {
    console.log(
      `  note: only ${options.conversations} conversations, and each runs one job at a time, ` +
        `so at most ${options.conversations} jobs can run at once`,
    );
  }
  const stack = await startBenchStack(options, emulators);
  try {
    const timings = await runLoad(stack, options);
    const result = summarize(options, timings, {
      maxInFlight: (await stack.llm.status()).maxInFlight,
      retries: stack.progress.retries,
    });
    printThroughput(result);
    return result;
  } finally {
    await stack.stop();
  }
}

async function runSections(options: BenchOptions, emulators: () => Promise<BenchEmulators>) {
  const figures: BenchFigures = {};
  const run = (section: BenchOptions["sections"][number]) => options.sections.includes(section);
  if (run("latency")) {
    console.log(`\n## Queued path (embedded): ${options.latencyRequests} requests per path`);
    figures.queued = await measureQueuedPath(options.latencyRequests);
    printRows(Object.entries(figures.queued).map(([k, v]) => [k, String(v)]));
  }
  if (run("wait")) {
    console.log(
      `\n## Completing write to answer (aws): ${options.waitRequests} requests, ` +
        `${WAIT_CLIENTS} callers at once`,
    );
    figures.wait = await measureAwsWait(await emulators(), options.waitRequests, WAIT_CLIENTS);
    printRows(Object.entries(figures.wait).map(([k, v]) => [k, String(v)]));
  }
  if (run("stream")) {
    figures.streams = [];
    for (const backend of ["embedded", "aws"] as const) {
      console.log(`\n## Streamed replies (${backend}): ${options.streams} streams`);
      const result = await measureStreams(
        backend,
        options.streams,
        backend === "aws" ? await emulators() : undefined,
      );
      figures.streams.push(result);
      printRows(Object.entries(result).map(([k, v]) => [k, String(v)]));
    }
  }
  if (run("lambda")) {
    console.log(`\n## Lambda bundle against its floor: ${options.coldRuns} cold starts each`);
    figures.lambda = await measureLambdaCold(options.coldRuns, await emulators());
    if ("skipped" in figures.lambda) {
      printRows([["lambda", `skipped: ${figures.lambda.skipped}`]]);
    } else {
      for (const which of ["gateway", "floor"] as const) {
        const f = figures.lambda[which];
        printRows([
          [`${which} bytes`, String(f.bytes)],
          [`${which} cold ms`, f.cold_ms.join(", ")],
          [`${which} import ms`, f.import_ms.join(", ")],
          [`${which} rss MiB`, f.rss_mb.join(", ")],
        ]);
      }
    }
  }
  if (run("throughput")) figures.throughput = await runThroughput(options, emulators);
  if (run("memory")) {
    console.log(
      `\n## Worker memory (aws): ${options.memoryConcurrency} places, ` +
        `${options.memoryQueued} jobs queued behind them, backend latency ${options.memoryLatencyMs} ms`,
    );
    figures.memory = await measureWorkerMemory(await emulators(), {
      concurrency: options.memoryConcurrency,
      queued: options.memoryQueued,
      latencyMs: options.memoryLatencyMs,
    });
    printRows(Object.entries(figures.memory).map(([k, v]) => [k, String(v)]));
  }
  if (run("backlog")) {
    figures.backlogs = [];
    for (const backend of ["embedded", "aws"] as const) {
      console.log(
        `\n## Backlog (${backend}): ${options.backlogConversations} conversations × ` +
          `${options.backlogMessages} messages wait, then one worker drains them`,
      );
      const result = await measureBacklog(backend, {
        conversations: options.backlogConversations,
        messages: options.backlogMessages,
        concurrency: options.concurrency,
        latencyMs: options.latencyMs,
        lineCheckSeconds: 2,
      }, backend === "aws" ? await emulators() : undefined);
      figures.backlogs.push(result);
      printRows(Object.entries(result).map(([k, v]) => [k, String(v)]));
    }
  }
  if (run("fairness")) {
    figures.fairness = [];
    for (const backend of ["embedded", "aws"] as const) {
      console.log(
        `\n## Fair shares (${backend}): key A queues ${options.fairFlood} jobs, then key B sends ` +
          `${options.fairQuiet} one after another; ${options.fairConcurrency} places, ` +
          `backend latency ${options.fairLatencyMs} ms`,
      );
      const result = await measureFairness(backend, {
        flood: options.fairFlood,
        quiet: options.fairQuiet,
        concurrency: options.fairConcurrency,
        latencyMs: options.fairLatencyMs,
      }, backend === "aws" ? await emulators() : undefined);
      figures.fairness.push(result);
      printRows(Object.entries(result).map(([k, v]) => [k, String(v)]));
    }
  }
  return figures;
}

if (import.meta.main) {
  const options = readBenchOptions(Deno.env.toObject());
  console.log(`Bench: ${options.sections.join(", ")} (Deno ${Deno.version.deno})`);
  let started: Promise<BenchEmulators> | undefined;
  const emulators = () => started ??= startBenchEmulators(options.sqs);
  let figures: BenchFigures;
  try {
    figures = await runSections(options, emulators);
  } finally {
    if (started) await (await started).stop();
  }
  console.log("\n## The figures and their goals\n");
  printFigures(figuresWithGoals(figures));
  console.log(`\n${JSON.stringify(figures)}`);
}
