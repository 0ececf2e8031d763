/** What clients see of a job record: no owner, lease or internal fields, and their own conversation id. */
import type { Job } from "./jobs.ts";
import { clientConversationId } from "./owners.ts";
import { sleep } from "./sleep.ts";
import type { Store } from "./store.ts";
import { isFinished } from "./store.ts";

/** A job as `GET /jobs/:id` shows it. */
export type JobView = Omit<
  Job,
  "owner" | "lease_until" | "partial" | "context" | "params" | "mode" | "stream"
>;

/** The client's view of a job. */
export function jobView(job: Job): JobView {
  const {
    owner,
    lease_until: _lease,
    partial: _partial,
    context: _context,
    params: _params,
    mode: _mode,
    stream: _stream,
    ...view
  } = job;
  return { ...view, conversation_id: clientConversationId(owner, job.conversation_id) };
}

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
