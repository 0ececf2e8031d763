/** Reading a caller's job, and waiting for it to end. */
import type { Job } from "../core/jobs.ts";
import { isFinished, type Store } from "../core/store.ts";
import { ApiError } from "./errors.ts";

/** A job only its owner may see: another key's job reads as missing. */
export async function ownJob(
  store: Store,
  jobId: string,
  owner: string | undefined,
): Promise<Job | undefined> {
  const job = await store.getJob(jobId);
  return job && job.owner === owner ? job : undefined;
}

/** Options for {@linkcode waitForJobEnd}. */
export interface WaitOptions {
  /**
   * Gives up after this long: in all, or, with `idle`, since the job last
   * changed (a state, or more of its reply), so a job that keeps making
   * progress is never given up on.
   */
  timeoutMs: number;
  idle?: boolean;
  /** When the wait ends whatever happens (epoch ms): before a Lambda's own timeout, say. */
  endBy?: number;
  signal?: AbortSignal;
  /** Sees each new state, e.g. to stream the reply so far. */
  onChange?: (job: Job) => void | Promise<void>;
  /** Called every `everyMs` while nothing changes, e.g. to keep a stream's connection alive. */
  onQuiet?: { everyMs: number; call: (job: Job | undefined) => void | Promise<void> };
}

/**
 * Follows a job until it is finished or the timeout has passed, and returns
 * its last state. The store decides how it learns of changes (in-process
 * notices on the embedded backend, one shared read loop on DynamoDB).
 */
export async function waitForJobEnd(
  store: Store,
  jobId: string,
  options: WaitOptions,
): Promise<Job | undefined> {
  const stop = new AbortController();
  const abort = () => stop.abort();
  options.signal?.addEventListener("abort", abort);
  if (options.signal?.aborted) stop.abort();
  const endBy = options.endBy ?? Infinity;
  let deadline = Math.min(Date.now() + options.timeoutMs, endBy);
  const states = store.watchJob(jobId, stop.signal)[Symbol.asyncIterator]();
  let last: Job | undefined;
  try {
    let next = states.next();
    while (true) {
      const quietMs = options.onQuiet?.everyMs ?? Infinity;
      const waitMs = Math.max(0, Math.min(deadline - Date.now(), quietMs));
      let timer: ReturnType<typeof setTimeout> | undefined;
      const woke = await Promise.race([
        next,
        new Promise<"timer">((resolve) => timer = setTimeout(() => resolve("timer"), waitMs)),
      ]);
      clearTimeout(timer);
      if (woke === "timer") {
        if (Date.now() >= deadline || stop.signal.aborted) return last;
        await options.onQuiet?.call(last);
        continue;
      }
      if (woke.done) return last;
      next = states.next();
      const job = woke.value;
      last = job;
      if (!job) return undefined;
      if (options.idle) deadline = Math.min(Date.now() + options.timeoutMs, endBy);
      await options.onChange?.(job);
      if (isFinished(job)) return job;
    }
  } finally {
    stop.abort();
    options.signal?.removeEventListener("abort", abort);
    await states.return?.(undefined);
  }
}

/** Time kept back from a Lambda's timeout to end a stream with its error and `[DONE]`. */
const LAMBDA_MARGIN_MS = 10_000;

/** When a wait on Lambda must end (epoch ms), from the function's remaining time; else undefined. */
export function lambdaEndBy(env: unknown): number | undefined {
  const context =
    (env as { lambdaContext?: { getRemainingTimeInMillis?: () => number } } | undefined)
      ?.lambdaContext;
  const remaining = context?.getRemainingTimeInMillis?.();
  return typeof remaining === "number" ? Date.now() + remaining - LAMBDA_MARGIN_MS : undefined;
}

/** A job that succeeded, or the error that says why there is no reply. */
export function finishedJob(
  job: Job | undefined,
  jobId: string,
  timeoutMs: number,
  endBy?: number,
): Job {
  if (job?.status === "succeeded") return job;
  if (job?.status === "failed") {
    throw new ApiError(502, `Job failed: ${job.error ?? "no reason recorded"}`, {
      code: "job_failed",
      jobId,
    });
  }
  if (job?.status === "canceled") {
    throw new ApiError(409, "Job was canceled", { code: "job_canceled", jobId });
  }
  if (endBy !== undefined && Date.now() >= endBy) {
    throw new ApiError(
      504,
      `The function's time is nearly up, so the answer ends here; job ${jobId} goes on: read it with GET /jobs/${jobId}`,
      { code: "timeout", jobId },
    );
  }
  throw new ApiError(
    504,
    `Timed out after ${
      timeoutMs / 1000
    } s without progress (SYNC_TIMEOUT_S) waiting for job ${jobId}; it goes on: read it with GET /jobs/${jobId}`,
    { code: "timeout", jobId },
  );
}

/**
 * How a route that answers with its job's reply waits for it: until the job
 * ends, or `timeoutMs` (SYNC_TIMEOUT_S) without progress (a reply that keeps
 * flowing never times out), or, on Lambda, in time to say so before the
 * function's own timeout; `finished` turns what the wait returned into the
 * job or the error that says why there is no reply.
 */
export function replyWait(
  jobId: string,
  options: { timeoutMs: number; env: unknown; signal: AbortSignal },
): { wait: WaitOptions; finished: (job: Job | undefined) => Job } {
  const endBy = lambdaEndBy(options.env);
  return {
    wait: { timeoutMs: options.timeoutMs, idle: true, endBy, signal: options.signal },
    finished: (job) => finishedJob(job, jobId, options.timeoutMs, endBy),
  };
}
