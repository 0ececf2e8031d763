/** A streamed job's reply so far, written to its record as it grows, for the front door to pass on. */
import { errorMessage } from "../core/error_message.ts";
import type { Logger } from "../core/log.ts";
import type { Services } from "../core/services.ts";

/** What {@linkcode streamedReplyWriter} needs. */
export interface StreamedReplyContext {
  services: Services;
  logger: Logger;
}

/** How often a streamed job's reply so far is written to its record, at most. */
const PARTIAL_EVERY_MS = 150;

/**
 * Writes a streamed reply to the job record as it grows, at most every
 * {@linkcode PARTIAL_EVERY_MS} and one write at a time, so the front door can
 * pass the pieces on; the complete reply is written when the job succeeds.
 */
export function streamedReplyWriter(
  jobId: string,
  context: StreamedReplyContext,
): (soFar: string) => void {
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
