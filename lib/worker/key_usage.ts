/**
 * What a worker writes for a key when its job starts and ends: the job
 * leaves its key's waiting jobs when it first starts; when it ends, its
 * usage is added to its key's day (kept 90 days, for `GET /v1/usage`), and
 * the tokens counted for it at the front door (an estimate) are corrected
 * with what the backend reported, in the window the job ends in.
 *
 * These writes follow the job's own, and usage is summed for a second
 * before it is written (one write per key and day, not per job): a worker
 * killed outright leaves its last second's jobs uncounted, never counts one
 * twice (a delivery that finds the job finished adds nothing). A waiting
 * member left behind is dropped when the key's set is next full
 * (lib/core/key_counters.ts).
 */
import {
  addUsage,
  dayOf,
  type DayUsage,
  type KeyCounters,
  usageOfJob,
  windowAt,
} from "../core/key_counters.ts";
import { errorMessage } from "../core/error_message.ts";
import type { Job } from "../core/jobs.ts";
import type { Logger } from "../core/log.ts";
import type { Usage } from "../core/messages.ts";
import type { Services } from "../core/services.ts";

/** How a run that started its job ended, as the worker's usage sees it. */
export interface EndedRun {
  job: Job;
  outcome: string;
  /** The backend's usage (or the gateway's count), when the run stored the job's reply. */
  usage?: Usage;
}

/** A job has started: on its first start, it leaves its key's waiting jobs. */
export function jobStarted(services: Services, logger: Logger, job: Job): void {
  const member = job.limits?.waiting;
  if (!member || job.attempts !== 1) return;
  services.counters.removeMembers("waiting", job.owner ?? "", [member]).catch((err) =>
    logger.warn("Could not take a started job off its key's waiting jobs", {
      job_id: job.job_id,
      error: errorMessage(err),
    })
  );
}

/** The outcome of a run that ended the job: succeeded (its reply stored by this run) or failed. */
function endOf(run: EndedRun): "succeeded" | "failed" | undefined {
  if (run.outcome === "succeeded" && run.usage) return "succeeded";
  if (run.outcome === "failed") return "failed";
  return undefined;
}

/**
 * How long a worker sums its keys' ended jobs before writing them: one write
 * per key and day for each second with jobs ending, not one per job.
 */
export const USAGE_FLUSH_MS = 1000;

/** Writes of one sum that may fail before it is given up as lost. */
const WRITE_TRIES = 3;

/** One key's day of usage, waiting to be written, and the writes of it that failed. */
interface PendingSum {
  owner: string;
  day: string;
  usage: DayUsage;
  failed: number;
}

/**
 * The usage of jobs that ended on this worker, summed per key and day and
 * written every {@linkcode USAGE_FLUSH_MS}; a write that fails is summed into
 * the next, up to {@linkcode WRITE_TRIES} writes, and
 * {@linkcode UsageTally.flush} writes what is left when the worker stops. A
 * worker killed outright loses at most that last second's sum. (A write that
 * DynamoDB applied but whose answer was lost is counted twice when made again:
 * usage is a statistic, not a bill, and the jobs themselves are not affected.)
 */
export class UsageTally {
  #counters: KeyCounters;
  #logger: Logger;
  #flushMs: number;
  #pending = new Map<string, PendingSum>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #writing = new Set<Promise<void>>();

  constructor(counters: KeyCounters, logger: Logger, flushMs = USAGE_FLUSH_MS) {
    this.#counters = counters;
    this.#logger = logger;
    this.#flushMs = flushMs;
  }

  /** Adds usage to its key's day; it is written within {@linkcode USAGE_FLUSH_MS}. */
  add(owner: string, day: string, usage: DayUsage): void {
    this.#hold({ owner, day, usage, failed: 0 });
  }

  /**
   * Writes what is summed now and waits for every write under way, then once
   * more for what failed; what fails again is logged as lost.
   */
  async flush(): Promise<void> {
    for (let round = 0; round < 2; round++) {
      this.#write();
      await Promise.allSettled([...this.#writing]);
    }
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const sum of this.#pending.values()) this.#lost(sum);
    this.#pending.clear();
  }

  #hold(sum: PendingSum): void {
    const id = `${sum.owner}\n${sum.day}`;
    const held = this.#pending.get(id);
    this.#pending.set(
      id,
      held
        ? {
          ...sum,
          usage: addUsage(held.usage, sum.usage),
          failed: Math.max(held.failed, sum.failed),
        }
        : sum,
    );
    this.#timer ??= setTimeout(() => this.#write(), this.#flushMs);
  }

  #write(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const sums = [...this.#pending.values()];
    this.#pending.clear();
    for (const sum of sums) {
      const write = this.#counters.recordUsage(sum.owner, sum.day, sum.usage).catch((err) => {
        const failed = { ...sum, failed: sum.failed + 1 };
        if (failed.failed >= WRITE_TRIES) return this.#lost(failed, err);
        this.#logger.warn("Could not write ended jobs' usage; it is kept for the next write", {
          jobs: sum.usage.jobs,
          error: errorMessage(err),
        });
        this.#hold(failed);
      }).finally(() => this.#writing.delete(write));
      this.#writing.add(write);
    }
  }

  #lost(sum: PendingSum, err?: unknown): void {
    this.#logger.error("Ended jobs' usage could not be written; it is lost", {
      jobs: sum.usage.jobs,
      writes: sum.failed,
      ...(err === undefined ? {} : { error: errorMessage(err) }),
    });
  }
}

/** A run has ended: a job that ended with it is added to its key's usage, and its tokens settled. */
export async function runEnded(
  services: Services,
  logger: Logger,
  tally: UsageTally,
  run: EndedRun,
): Promise<void> {
  const end = endOf(run);
  if (!end) return;
  const { job } = run;
  const owner = job.owner ?? "";
  const usage = end === "succeeded" ? run.usage! : undefined;
  tally.add(
    owner,
    dayOf(Date.now()),
    usageOfJob({
      failed: end === "failed",
      prompt_tokens: usage?.prompt_tokens ?? 0,
      completion_tokens: usage?.completion_tokens ?? 0,
      api: job.api ?? "chat",
    }),
  );
  const { tokens, window_s } = job.limits ?? {};
  if (tokens === undefined || !window_s) return;
  // A failed job is given its estimate back: what its attempts cost is not known.
  const used = usage ? usage.prompt_tokens + usage.completion_tokens : 0;
  await services.counters.addToWindow(owner, windowAt(Date.now(), window_s), {
    tokens: used - tokens,
  }).catch((err) =>
    logger.warn("Could not correct a finished job's tokens in its key's window", {
      job_id: job.job_id,
      error: errorMessage(err),
    })
  );
}
