/**
 * Telling a request that waits on a job when the job's record changes: the
 * store publishes what it learned (a record it wrote or read, a streamed
 * job's reply so far), and {@linkcode followJob} turns that into the states a
 * waiting request sees, newest first-come, without polling.
 */
import type { Job } from "./jobs.ts";

/** A streamed reply so far: its text, and its reasoning when the backend shows it. */
export interface ReplySoFar {
  content: string;
  reasoning?: string;
}

/** What a store learned about a job: its record, a streamed job's reply so far, or a failed read. */
export type JobNotice = { job: Job | undefined } | { partial: ReplySoFar } | { error: unknown };

/** Receives the notices about one job. */
export type JobListener = (notice: JobNotice) => void;

/** Where notices about jobs come from. */
export interface JobNoticeSource {
  /** Calls `listener` with each notice about `jobId` until the returned function is called. */
  subscribe(jobId: string, listener: JobListener): () => void;
}

/** In-process notices by job id, from the code that changed a job to the requests waiting on it. */
export class JobChanges implements JobNoticeSource {
  #listeners = new Map<string, Set<JobListener>>();

  /** Tells everyone who follows the job; a listener that throws does not stop the others. */
  publish(jobId: string, notice: JobNotice): void {
    for (const listener of this.#listeners.get(jobId) ?? []) {
      try {
        listener(notice);
      } catch {
        // A follower's own failure is its own; the store's write already happened.
      }
    }
  }

  subscribe(jobId: string, listener: JobListener): () => void {
    let listeners = this.#listeners.get(jobId);
    if (!listeners) this.#listeners.set(jobId, listeners = new Set());
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0 && this.#listeners.get(jobId) === listeners) {
        this.#listeners.delete(jobId);
      }
    };
  }

  /** Whether anyone follows the job now. */
  isFollowed(jobId: string): boolean {
    return this.#listeners.has(jobId);
  }
}

/** Options for {@linkcode followJob}. */
export interface FollowJobOptions {
  /** Reads the record as it is now; called first, and for each recheck. */
  read?: () => Promise<Job | undefined>;
  /**
   * Also reads the record when no notice came for this long, in case it was
   * changed where no notice comes from (another process). Default: never.
   */
  recheckMs?: number;
}

/**
 * Yields a job's record as the source reports it: first the state now, then
 * each newer state (intermediate ones may be skipped, never reordered), with
 * a streamed job's reply so far in `partial`. Yields undefined once, and
 * ends, when there is no such job; ends when `signal` aborts; throws when the
 * source reports a failed read.
 */
export async function* followJob(
  source: JobNoticeSource,
  jobId: string,
  signal: AbortSignal,
  options: FollowJobOptions = {},
): AsyncGenerator<Job | undefined> {
  let current: Job | undefined;
  let fresh = false;
  let failure: { error: unknown } | undefined;
  let wake: (() => void) | undefined;
  const take = (job: Job | undefined) => {
    current = keepPartial(job, current);
    fresh = true;
  };
  const unsubscribe = source.subscribe(jobId, (notice) => {
    if ("job" in notice) take(notice.job);
    else if ("error" in notice) failure = notice;
    else if (current?.status === "running") {
      current = withReplySoFar(current, notice.partial);
      fresh = true;
    }
    wake?.();
  });
  const onAbort = () => wake?.();
  signal.addEventListener("abort", onAbort);
  try {
    if (options.read) {
      const job = await options.read();
      if (!fresh) take(job); // a notice that came during the read is newer
    }
    let shown: string | undefined;
    while (!signal.aborted) {
      if (failure) throw failure.error;
      if (fresh) {
        fresh = false;
        const print = fingerprint(current);
        if (print === shown) continue;
        shown = print;
        yield current;
        if (!current) return;
        continue;
      }
      const timedOut = await sleepUntilWoken(options.recheckMs, (resolve) => wake = resolve);
      wake = undefined;
      if (timedOut && options.read && !fresh && !signal.aborted) {
        const job = await options.read();
        if (!fresh) take(job);
      }
    }
  } finally {
    unsubscribe();
    signal.removeEventListener("abort", onAbort);
  }
}

/** Resolves true after `ms` (never when undefined), or false as soon as `onWake`'s function is called. */
function sleepUntilWoken(
  ms: number | undefined,
  onWake: (wake: () => void) => void,
): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = ms === undefined ? undefined : setTimeout(() => resolve(true), ms);
    onWake(() => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}

/**
 * A record without `partial` (one the store wrote, not a reply so far) keeps
 * the reply so far of the same running attempt, so a lease renewal does not
 * look like the reply went back to nothing.
 */
function keepPartial(job: Job | undefined, before: Job | undefined): Job | undefined {
  if (
    job?.status === "running" && job.partial === undefined && before?.status === "running" &&
    before.attempts === job.attempts && before.partial !== undefined
  ) {
    return withReplySoFar(job, { content: before.partial, reasoning: before.partial_reasoning });
  }
  return job;
}

/** A running job with its reply so far in `partial` and `partial_reasoning`. */
export function withReplySoFar(job: Job, soFar: ReplySoFar): Job {
  const next: Job = { ...job, partial: soFar.content };
  if (soFar.reasoning) next.partial_reasoning = soFar.reasoning;
  else delete next.partial_reasoning;
  return next;
}

/** What makes two states of a job different for someone waiting on it. */
export function fingerprint(job: Job | undefined): string {
  if (!job) return "";
  return [
    job.status,
    job.updated_at,
    job.attempts,
    job.partial?.length ?? -1,
    job.partial_reasoning?.length ?? -1,
    job.reply?.length ?? -1,
    job.error ?? "",
  ].join("|");
}
