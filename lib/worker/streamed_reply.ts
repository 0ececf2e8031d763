/** A streamed job's reply so far, written to its record as it grows, for the front door to pass on. */
import { errorMessage } from "../core/error_message.ts";
import type { ReplySoFar } from "../core/job_changes.ts";
import type { Logger } from "../core/log.ts";
import type { Services } from "../core/services.ts";

/** What {@linkcode streamedReplyWriter} needs. */
export interface StreamedReplyContext {
  services: Services;
  logger: Logger;
}

/**
 * Records a streamed reply as it grows, at most every `partialEveryMs` of the
 * store (every piece on the embedded backend, where it only travels
 * in-process) and one write at a time, so the front door can pass the pieces
 * on; the complete reply is written when the job succeeds.
 */
export function streamedReplyWriter(
  jobId: string,
  context: StreamedReplyContext,
): (soFar: ReplySoFar) => void {
  const everyMs = context.services.store.partialEveryMs;
  let latest: ReplySoFar = { content: "" };
  let writing = false;
  let lastWrite = 0;
  let written: ReplySoFar = { content: "" };
  const grown = () =>
    latest.content.length !== written.content.length ||
    (latest.reasoning ?? "").length !== (written.reasoning ?? "").length;
  const write = async () => {
    writing = true;
    try {
      while (Date.now() - lastWrite >= everyMs && grown()) {
        const soFar = latest;
        lastWrite = Date.now();
        await context.services.store.savePartial(jobId, soFar);
        written = soFar;
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
    latest = { ...soFar };
    if (!writing && Date.now() - lastWrite >= everyMs) write();
  };
}
