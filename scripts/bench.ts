/**
 * `deno task bench`: the worker's throughput against a backend with a fixed
 * latency, on Moto (default) or the embedded backend, then the Lambda
 * bundle's size and cold import time under Node.js.
 *
 * Settings: BENCH_BACKEND (aws | embedded; BACKEND=embedded works too),
 * BENCH_JOBS (400), BENCH_LATENCY_MS (200), VLLM_CONCURRENCY (16),
 * BENCH_CONVERSATIONS (one per job), BENCH_SUBMITTERS (16 POSTs at once),
 * BENCH_AWS_ENDPOINT_URL (a Moto already running on 127.0.0.1, instead of a fresh one).
 */
import { measureLambdaCold } from "./bench/lambda_cold.ts";
import { runLoad } from "./bench/load.ts";
import { readBenchOptions } from "./bench/options.ts";
import { printLambda, printThroughput, summarize, withLambda } from "./bench/report.ts";
import { startBenchStack } from "./bench/stack.ts";

/** Fresh Node.js processes the cold import is timed in. */
const IMPORT_RUNS = 3;

if (import.meta.main) {
  const options = readBenchOptions(Deno.env.toObject());
  console.log(
    `Bench: ${options.jobs} jobs on ${options.backend}, backend latency ${options.latencyMs} ms, ` +
      `VLLM_CONCURRENCY=${options.concurrency}`,
  );
  if (options.conversations < options.concurrency) {
    console.log(
      `  note: only ${options.conversations} conversations, and each runs one job at a time, ` +
        `so at most ${options.conversations} jobs can run at once`,
    );
  }

  const stack = await startBenchStack(options);
  let result;
  try {
    const timings = await runLoad(stack, options);
    result = summarize(options, timings, {
      maxInFlight: stack.llm.maxInFlight,
      busyMs: stack.llm.busyMs,
      retries: stack.watch.retries,
    });
  } finally {
    await stack.stop();
  }
  printThroughput(result);

  console.log("Lambda bundle: building and importing it under Node.js");
  const cold = await measureLambdaCold(IMPORT_RUNS);
  printLambda(cold);

  console.log(JSON.stringify(withLambda(result, cold)));
}
