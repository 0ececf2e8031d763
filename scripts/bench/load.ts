/** Sends the bench's jobs through the front door and times each one from enqueue to done. */
import { errorMessage } from "../../lib/core/error_message.ts";
import { type CallCounts, callsSince } from "./aws_calls.ts";
import type { BenchOptions } from "./options.ts";
import { cpuSnapshot } from "./processes.ts";
import { round } from "./stats.ts";
import type { BenchStack } from "./stack.ts";

/** The longest the bench waits for all jobs. */
const DEADLINE_MS = 10 * 60_000;

/** Raw timings of one load run, in performance.now() ms. */
export interface LoadTimings {
  /** When POST /chat answered 202, per job. */
  enqueuedAt: Map<string, number>;
  /** When the job's success was stored, per job (warm-up jobs too, before the run). */
  doneAt: Map<string, number>;
  /** The backend calls of the timed jobs: when each came in and ended. */
  spans: { start: number; end: number }[];
  /** AWS calls from the first submission to the last job done, by command (AWS only). */
  calls?: { frontDoor: CallCounts; worker: CallCounts };
  /** CPU seconds each process used from the first submission to the last job done. */
  cpuSeconds: Record<string, number>;
}

/**
 * Runs one job per backend place first, untimed, so that neither process
 * meets its code paths for the first time during the run; then submits every
 * job as fast as the front door takes them and waits until all have succeeded.
 */
export async function runLoad(stack: BenchStack, options: BenchOptions): Promise<LoadTimings> {
  const warmUp = await submitAll(stack, options, options.concurrency, (i) => `warm-up-${i}`);
  await stack.progress.allDone(new Set(warmUp.keys()), DEADLINE_MS);
  const spansBefore = (await stack.llm.spans()).length;
  const cpuBefore = await cpuSnapshot(stack.processes);
  const callsBefore = stack.calls && {
    frontDoor: await stack.calls.frontDoor(),
    worker: await stack.calls.worker(),
  };
  const enqueuedAt = new Map<string, number>();
  const progress = startProgress(stack, options, enqueuedAt);
  let calls: LoadTimings["calls"];
  let cpuSeconds: Record<string, number>;
  try {
    const conversation = (i: number) => `bench-${i % options.conversations}`;
    await submitAll(stack, options, options.jobs, conversation, enqueuedAt);
    await stack.progress.allDone(new Set(enqueuedAt.keys()), DEADLINE_MS);
    const cpuAfter = await cpuSnapshot(stack.processes);
    cpuSeconds = Object.fromEntries(
      Object.entries(cpuAfter).map(([name, s]) => [name, round(s - (cpuBefore[name] ?? 0), 2)]),
    );
    if (stack.calls && callsBefore) {
      calls = {
        frontDoor: callsSince(await stack.calls.frontDoor(), callsBefore.frontDoor),
        worker: callsSince(await stack.calls.worker(), callsBefore.worker),
      };
    }
  } finally {
    await progress.stop();
  }
  await verifySucceeded(stack, [...enqueuedAt.keys()]);
  return {
    enqueuedAt,
    doneAt: stack.progress.doneAt,
    spans: (await stack.llm.spans()).slice(spansBefore),
    calls,
    cpuSeconds,
  };
}

/** Submits `count` jobs from the bench's submitters at once; when each was accepted, by job id. */
async function submitAll(
  stack: BenchStack,
  options: BenchOptions,
  count: number,
  conversation: (index: number) => string,
  enqueuedAt = new Map<string, number>(),
): Promise<Map<string, number>> {
  let next = 0;
  const submitter = async () => {
    while (next < count) {
      const index = next++;
      const jobId = await submit(stack, conversation(index), index);
      enqueuedAt.set(jobId, performance.now());
    }
  };
  await Promise.all(Array.from({ length: options.submitters }, submitter));
  return enqueuedAt;
}

async function submit(stack: BenchStack, conversationId: string, index: number): Promise<string> {
  const res = await stack.app.request("/chat", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ conversation_id: conversationId, user_message: `Bench job ${index}` }),
  });
  const text = await res.text();
  if (res.status !== 202) {
    throw new Error(`Cannot submit bench job ${index}: POST /chat answered ${res.status}: ${text}`);
  }
  return (JSON.parse(text) as { job_id: string }).job_id;
}

/** Reads every job record back once the clock has stopped: the store must agree they succeeded. */
async function verifySucceeded(stack: BenchStack, jobIds: string[]): Promise<void> {
  const pending = [...jobIds];
  const reader = async () => {
    for (let id = pending.pop(); id !== undefined; id = pending.pop()) {
      const job = await stack.services.store.getJob(id);
      if (job?.status !== "succeeded") {
        throw new Error(
          `Bench failed: job ${id} is ${job?.status ?? "missing"} in the store${
            job?.error ? `: ${job.error}` : ""
          }`,
        );
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, reader));
}

/** One progress line a second: rewritten in place on a terminal, a plain line otherwise. */
function startProgress(
  stack: BenchStack,
  options: BenchOptions,
  enqueuedAt: Map<string, number>,
): { stop(): Promise<void> } {
  const tty = Deno.stdout.isTerminal();
  const encoder = new TextEncoder();
  const started = performance.now();
  let lastDone = 0;
  let lastWidth = 0;
  const write = (text: string) => Deno.stdout.writeSync(encoder.encode(text));
  let stopped = false;
  let asking: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    const done = stack.progress.doneAt.size;
    const elapsed = (performance.now() - started) / 1000;
    const head =
      `  ${elapsed.toFixed(0).padStart(3)} s  enqueued ${enqueuedAt.size}/${options.jobs}` +
      `  done ${done}/${options.jobs}  ${done - lastDone} jobs/s now` +
      `  ${(done / elapsed).toFixed(1)} jobs/s overall`;
    lastDone = done;
    // The stand-in runs in a process of its own: its count comes a moment later.
    asking = stack.llm.status().then(({ inFlight }) => {
      if (stopped) return;
      const line = `${head}  backend in flight ${inFlight}`;
      if (tty) {
        write(`\r${line.padEnd(lastWidth)}`);
        lastWidth = line.length;
      } else {
        write(`${line}\n`);
      }
    }).catch((err) => {
      if (!stopped) console.error(`Bench progress: ${errorMessage(err)}`);
    });
  }, 1000);
  return {
    async stop() {
      clearInterval(timer);
      await asking;
      stopped = true;
      if (tty && lastWidth > 0) write("\n");
    },
  };
}
