/** What a running job sends out besides its reply: the streamed text so far, and the callback when it ends. */
import { errorMessage } from "./error_message.ts";
import { deliverCallback } from "./callbacks.ts";
import { jobView } from "./job_view.ts";
import type { Job } from "./jobs.ts";
import type { Logger } from "./log.ts";
import type { Services } from "./services.ts";

/** What the outputs need from the job runner. */
export interface JobOutputContext {
  services: Services;
  logger: Logger;
  signal: AbortSignal;
}

/** How often a streamed job's reply so far is written to its record, at most. */
const PARTIAL_EVERY_MS = 150;

/**
 * Writes a streamed reply to the job record as it grows, at most every
 * {@linkcode PARTIAL_EVERY_MS} and one write at a time, so the front door can
 * pass the pieces on; the complete reply is written when the job succeeds.
 */
export function partialWriter(jobId: string, context: JobOutputContext): (soFar: string) => void {
  let latest = "";
  let writing = false;
  let lastWrite = 0;
  const write = async () => {
    writing = true;
    try {
      while (Date.now() - lastWrite >= PARTIAL_EVERY_MS && latest) {
        const text = latest;
        lastWrite = Date.now();
        await context.services.store.savePartial(jobId, text);
        if (latest === text) break;
      }
    } catch (err) {
      context.logger.warn("Could not record a streamed reply so far", {
        job_id: jobId,
        error: errorMessage(err),
      });
    } finally {
      writing = false;
    }
  };
  return (soFar) => {
    latest = soFar;
    if (!writing && Date.now() - lastWrite >= PARTIAL_EVERY_MS) write();
  };
}

/** POSTs a finished job to its `callback_url`, a bounded number of times; never throws. */
export async function callBack(job: Job, context: JobOutputContext): Promise<void> {
  if (!job.callback_url) return;
  const { store, config } = context.services;
  const finished = await store.getJob(job.job_id).catch(() => undefined) ?? job;
  const result = await deliverCallback(job.callback_url, jobView(finished), {
    attempts: CALLBACK_ATTEMPTS,
    timeoutMs: CALLBACK_TIMEOUT_MS,
    backoffMs: CALLBACK_BACKOFF_MS,
    allowedHosts: config.callbackAllowedHosts,
    signal: context.signal,
  });
  const fields = { job_id: job.job_id, attempts: result.attempts };
  if (result.delivered) {
    context.logger.info("Callback delivered", { ...fields, status: result.status });
  } else context.logger.warn("Callback not delivered", { ...fields, error: result.error });
}

/** Callback deliveries: a few tries with growing pauses, never forever. */
const CALLBACK_ATTEMPTS = 4;
const CALLBACK_TIMEOUT_MS = 10_000;
const CALLBACK_BACKOFF_MS = 1_000;
