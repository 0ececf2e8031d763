/**
 * What a worker writes for a key when its job starts and ends: the job
 * leaves its key's waiting jobs when it first starts; when it ends, its
 * usage is added to its key's day (kept 90 days, for `GET /v1/usage`), and
 * the tokens counted for it at the front door (an estimate) are corrected
 * with what the backend reported, in the window the job ends in.
 *
 * These writes follow the job's own: a worker that dies between the two
 * leaves a day one job short, never counted twice (a delivery that finds
 * the job finished writes nothing). A waiting member left behind is dropped
 * when the key's set is next full (lib/core/key_counters.ts).
 */
import { dayOf, windowAt } from "../core/key_counters.ts";
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

/** A run has ended: a job that ended with it is added to its key's usage, and its tokens settled. */
export async function runEnded(services: Services, logger: Logger, run: EndedRun): Promise<void> {
  const end = endOf(run);
  if (!end) return;
  const { job } = run;
  const owner = job.owner ?? "";
  const usage = end === "succeeded" ? run.usage! : undefined;
  const writes: Promise<void>[] = [
    services.counters.recordUsage(owner, dayOf(Date.now()), {
      failed: end === "failed",
      prompt_tokens: usage?.prompt_tokens ?? 0,
      completion_tokens: usage?.completion_tokens ?? 0,
      api: job.api ?? "chat",
    }),
  ];
  const { tokens, window_s } = job.limits ?? {};
  if (tokens !== undefined && window_s) {
    // A failed job is given its estimate back: what its attempts cost is not known.
    const used = usage ? usage.prompt_tokens + usage.completion_tokens : 0;
    writes.push(
      services.counters.addToWindow(owner, windowAt(Date.now(), window_s), {
        tokens: used - tokens,
      }),
    );
  }
  const results = await Promise.allSettled(writes);
  for (const result of results) {
    if (result.status === "rejected") {
      logger.warn("Could not count a finished job's usage", {
        job_id: job.job_id,
        error: errorMessage(result.reason),
      });
    }
  }
}
