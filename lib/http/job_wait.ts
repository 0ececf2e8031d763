/** Reading a caller's job, and waiting for it to end. */
import type { Job } from "../core/jobs.ts";
import { sleep } from "../core/sleep.ts";
import { isFinished, type Store } from "../core/store.ts";

/** A job only its owner may see: another key's job reads as missing. */
export async function ownJob(
  store: Store,
  jobId: string,
  owner: string | undefined,
): Promise<Job | undefined> {
  const job = await store.getJob(jobId);
  return job && job.owner === owner ? job : undefined;
}

/**
 * Reads a job until it is finished or `timeoutMs` has passed, and returns
 * its last state. `onChange` sees every state read, e.g. to stream `partial`.
 */
export async function waitForJobEnd(
  store: Store,
  jobId: string,
  options: {
    timeoutMs: number;
    signal?: AbortSignal;
    onChange?: (job: Job) => void | Promise<void>;
  },
): Promise<Job | undefined> {
  const deadline = Date.now() + options.timeoutMs;
  let delay = 50;
  while (true) {
    const job = await store.getJob(jobId);
    if (job) await options.onChange?.(job);
    if (!job || isFinished(job) || Date.now() >= deadline || options.signal?.aborted) return job;
    await sleep(Math.min(delay, deadline - Date.now()), options.signal);
    delay = Math.min(delay * 2, job.stream ? 200 : 500);
  }
}
