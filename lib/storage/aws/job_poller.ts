/**
 * Waiting on DynamoDB, where the worker is another machine and nothing tells
 * the front door a record changed: one loop per process reads every job that
 * a request waits on, many in one call (BatchGetItem), each on its own
 * schedule (see {@linkcode readDelayMs}). A long-lived server thus makes one
 * read loop however many requests wait; a Lambda serves one request at a time,
 * so its loop follows that request's job.
 */
import { fingerprint, JobChanges, type JobListener } from "../../core/job_changes.ts";
import type { Job } from "../../core/jobs.ts";
import { isFinished } from "../../core/store.ts";

/** Reads while the job is young: most replies come within this long. */
export const QUICK_PHASE_MS = 10_000;
/** The read interval during the quick phase. */
export const QUICK_READ_MS = 50;
/** The read interval of a streamed job while it runs, so its pieces come no lumpier than 100 ms. */
export const STREAM_READ_MS = 30;
/** The longest read interval, reached a minute into the wait. */
export const SLOW_READ_MS = 1000;
/** After the quick phase, the interval grows by this much per ms waited (50 → 1000 ms over 50 s). */
const BACKOFF_PER_MS = (SLOW_READ_MS - QUICK_READ_MS) / 50_000;
/** Jobs due within this window are read together, in the same call. */
const BATCH_WINDOW_MS = 10;
/** BatchGetItem's limit of keys per call; a streamed job takes two (its record and its reply so far). */
const MAX_KEYS = 100;

/**
 * How long until a followed job is read again: every 50 ms for the first
 * 10 s, then slower and slower up to once a second a minute into the wait;
 * a streamed job that runs is read every 30 ms.
 */
export function readDelayMs(job: Job | undefined, followedMs: number): number {
  if (job && isFinished(job)) return SLOW_READ_MS;
  if (job?.stream && job.status === "running") return STREAM_READ_MS;
  if (followedMs < QUICK_PHASE_MS) return QUICK_READ_MS;
  return Math.min(SLOW_READ_MS, QUICK_READ_MS + (followedMs - QUICK_PHASE_MS) * BACKOFF_PER_MS);
}

/** What one batched read returned. */
export interface BatchRead {
  /** The records found, a streamed running job's reply so far merged in `partial`. */
  jobs: Map<string, Job>;
  /** Jobs the store did not get to this time (DynamoDB's UnprocessedKeys); read again soon. */
  unprocessed: Set<string>;
}

/** Reads jobs, at most 100 keys: each job, and the reply so far of those in `withPartial`. */
export type ReadJobs = (jobIds: string[], withPartial: ReadonlySet<string>) => Promise<BatchRead>;

/** What the loop knows of one followed job. */
interface Followed {
  /** When someone started following it (epoch ms). */
  since: number;
  /** When it is next read (epoch ms). */
  nextAt: number;
  last?: Job;
  print?: string;
}

/** Options for {@linkcode JobPoller}. */
export interface JobPollerOptions {
  /** The read schedule; default {@linkcode readDelayMs}. */
  delayMs?: (job: Job | undefined, followedMs: number) => number;
}

/** The read loop; a store hands it to {@linkcode followJob} as the source of notices. */
export class JobPoller {
  #read: ReadJobs;
  #delayMs: (job: Job | undefined, followedMs: number) => number;
  #changes = new JobChanges();
  #followed = new Map<string, Followed>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #reading = false;
  /** Batched read calls made so far, for the bench. */
  calls = 0;

  constructor(read: ReadJobs, options: JobPollerOptions = {}) {
    this.#read = read;
    this.#delayMs = options.delayMs ?? readDelayMs;
  }

  /** Follows a job: it is read at once, then on its schedule, until the last follower leaves. */
  subscribe(jobId: string, listener: JobListener): () => void {
    const unsubscribe = this.#changes.subscribe(jobId, listener);
    const now = Date.now();
    const followed = this.#followed.get(jobId);
    if (followed) {
      // The newcomer needs the state now, and told even if it has not changed.
      followed.nextAt = now;
      followed.print = undefined;
    } else {
      this.#followed.set(jobId, { since: now, nextAt: now });
    }
    this.#schedule();
    return () => {
      unsubscribe();
      if (!this.#changes.isFollowed(jobId)) this.#followed.delete(jobId);
      if (this.#followed.size === 0) this.#schedule();
    };
  }

  /** How many jobs are followed now. */
  get size(): number {
    return this.#followed.size;
  }

  #schedule(): void {
    if (this.#reading) return; // the loop schedules itself when the read ends
    clearTimeout(this.#timer);
    this.#timer = undefined;
    let next = Infinity;
    for (const followed of this.#followed.values()) next = Math.min(next, followed.nextAt);
    if (next === Infinity) return;
    this.#timer = setTimeout(() => this.#readDue(), Math.max(0, next - Date.now()));
  }

  async #readDue(): Promise<void> {
    this.#timer = undefined;
    this.#reading = true;
    try {
      const now = Date.now();
      const due = [...this.#followed].filter(([, f]) => f.nextAt <= now + BATCH_WINDOW_MS);
      await Promise.all(batches(due).map((batch) => this.#readBatch(batch)));
    } finally {
      this.#reading = false;
      this.#schedule();
    }
  }

  async #readBatch(batch: [string, Followed][]): Promise<void> {
    const ids = batch.map(([id]) => id);
    const withPartial = new Set(batch.filter(([, f]) => wantsPartial(f.last)).map(([id]) => id));
    this.calls++;
    let result: BatchRead;
    try {
      result = await this.#read(ids, withPartial);
    } catch (error) {
      // Each follower fails as a read of its own would have; the next follower starts afresh.
      for (const id of ids) this.#changes.publish(id, { error });
      return;
    }
    const now = Date.now();
    for (const [id, followed] of batch) {
      if (this.#followed.get(id) !== followed) continue; // nobody follows it any more
      if (result.unprocessed.has(id)) {
        followed.nextAt = now + QUICK_READ_MS;
        continue;
      }
      const job = result.jobs.get(id);
      followed.nextAt = now + this.#delayMs(job, now - followed.since);
      const print = fingerprint(job);
      if (followed.print === print && job) continue;
      followed.print = print;
      followed.last = job;
      this.#changes.publish(id, { job });
    }
  }
}

/** A streamed job that runs has a reply so far worth reading. */
function wantsPartial(job: Job | undefined): boolean {
  return job?.stream === true && job.status === "running";
}

/** Splits due jobs into calls of at most {@linkcode MAX_KEYS} keys. */
function batches(due: [string, Followed][]): [string, Followed][][] {
  const out: [string, Followed][][] = [];
  let current: [string, Followed][] = [];
  let keys = 0;
  for (const entry of due) {
    const size = wantsPartial(entry[1].last) ? 2 : 1;
    if (keys + size > MAX_KEYS) {
      out.push(current);
      current = [];
      keys = 0;
    }
    current.push(entry);
    keys += size;
  }
  if (current.length > 0) out.push(current);
  return out;
}
