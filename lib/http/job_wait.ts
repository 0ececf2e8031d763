/** Reading a caller's job, and waiting for it to end. */
import type { Job } from "../core/jobs.ts";
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
 * Follows a job until it is finished or `timeoutMs` has passed, and returns
 * its last state. `onChange` sees each new state as the store learns of it,
 * e.g. to stream `partial`; the store decides how it learns (in-process
 * notices on the embedded backend, one shared read loop on DynamoDB).
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
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), options.timeoutMs);
  const abort = () => stop.abort();
  options.signal?.addEventListener("abort", abort);
  if (options.signal?.aborted) stop.abort();
  let last: Job | undefined;
  try {
    for await (const job of store.watchJob(jobId, stop.signal)) {
      last = job;
      if (!job) return undefined;
      await options.onChange?.(job);
      if (isFinished(job)) return job;
    }
    return last;
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", abort);
  }
}
