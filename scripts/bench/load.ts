/** Sends the bench's jobs through the front door and times each one from enqueue to done. */
import type { BenchOptions } from "./options.ts";
import type { BenchStack } from "./stack.ts";

/** The longest the bench waits for all jobs. */
const DEADLINE_MS = 10 * 60_000;

/** Raw timings of one load run, in performance.now() ms. */
export interface LoadTimings {
  /** When POST /chat answered 202, per job. */
  enqueuedAt: Map<string, number>;
  /** When the job's success was stored, per job. */
  doneAt: Map<string, number>;
}

/** Submits every job as fast as the front door takes them, then waits until all have succeeded. */
export async function runLoad(stack: BenchStack, options: BenchOptions): Promise<LoadTimings> {
  const enqueuedAt = new Map<string, number>();
  const progress = startProgress(stack, options, enqueuedAt);
  try {
    let next = 0;
    const submitter = async () => {
      while (next < options.jobs) {
        const index = next++;
        const jobId = await submit(stack, `bench-${index % options.conversations}`, index);
        enqueuedAt.set(jobId, performance.now());
      }
    };
    await Promise.all(Array.from({ length: options.submitters }, submitter));
    await stack.watch.allDone(new Set(enqueuedAt.keys()), DEADLINE_MS);
  } finally {
    progress.stop();
  }
  await verifySucceeded(stack, [...enqueuedAt.keys()]);
  return { enqueuedAt, doneAt: stack.watch.doneAt };
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
): { stop(): void } {
  const tty = Deno.stdout.isTerminal();
  const encoder = new TextEncoder();
  const started = performance.now();
  let lastDone = 0;
  let lastWidth = 0;
  const write = (text: string) => Deno.stdout.writeSync(encoder.encode(text));
  const timer = setInterval(() => {
    const done = stack.watch.doneAt.size;
    const elapsed = (performance.now() - started) / 1000;
    const line =
      `  ${elapsed.toFixed(0).padStart(3)} s  enqueued ${enqueuedAt.size}/${options.jobs}` +
      `  done ${done}/${options.jobs}  ${done - lastDone} jobs/s now` +
      `  ${(done / elapsed).toFixed(1)} jobs/s overall  backend in flight ${stack.llm.inFlight}`;
    lastDone = done;
    if (tty) {
      write(`\r${line.padEnd(lastWidth)}`);
      lastWidth = line.length;
    } else {
      write(`${line}\n`);
    }
  }, 1000);
  return {
    stop() {
      clearInterval(timer);
      if (tty && lastWidth > 0) write("\n");
    },
  };
}
