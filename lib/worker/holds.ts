/**
 * The worker's holds on what it has taken: each message it holds stays
 * hidden on its queue, and each job it runs stays leased in the store, for as
 * long as it holds them. A heartbeat extends both.
 */
import { errorMessage } from "../core/error_message.ts";
import type { Logger } from "../core/log.ts";
import type { ReceivedJob } from "../core/queue.ts";
import type { Services } from "../core/services.ts";

/** A message the worker holds: waiting to start, or running. */
export interface Held {
  message: ReceivedJob;
  /** When it was last made hidden for the visibility timeout: received, or extended by a heartbeat. */
  hiddenSince: number;
  /** When its job's lease was last taken or renewed; undefined until its run starts. */
  leasedSince?: number;
}

/** How often the heartbeat runs: three times per visibility timeout, at most twice a second. */
export function beatInterval(visibilityTimeoutSeconds: number): number {
  return Math.max(500, (visibilityTimeoutSeconds * 1000) / 3);
}

/**
 * Whether a heartbeat extends a held message's visibility (or a running job's
 * lease) last set at `since`: once it has gone half a beat without. So a job
 * that ends within half a beat of its message arriving costs no heartbeat
 * calls, and each hold is extended at least every one and a half beats: with
 * beats every third of the timeout, a beat may run up to half the timeout late
 * before anything lapses (every beat extending everything allowed two thirds).
 */
export function extensionDue(since: number, now: number, beatEveryMs: number): boolean {
  return now - since >= beatEveryMs / 2;
}

/**
 * Extends the holds that are due (see {@linkcode extensionDue}): a short job
 * costs no heartbeat calls. A call that fails is logged; the next beat tries
 * again.
 */
export function extendHolds(
  holds: Iterable<Held>,
  context: { services: Services; logger: Logger; beatEveryMs: number },
): void {
  const { queue, store, config } = context.services;
  const seconds = config.visibilityTimeoutSeconds;
  const now = Date.now();
  const due = (since: number) => extensionDue(since, now, context.beatEveryMs);
  for (const held of holds) {
    const { message } = held;
    if (due(held.hiddenSince)) {
      held.hiddenSince = now;
      queue.returnAfter(message, seconds).catch((err) =>
        context.logger.warn("Heartbeat could not extend a message", {
          job_id: message.ticket.job_id,
          error: errorMessage(err),
        })
      );
    }
    if (held.leasedSince !== undefined && due(held.leasedSince)) {
      held.leasedSince = now;
      store.renewLease(message.ticket.job_id, seconds * 1000).catch((err) =>
        context.logger.warn("Heartbeat could not renew a lease", {
          job_id: message.ticket.job_id,
          error: errorMessage(err),
        })
      );
    }
  }
}
