/**
 * Jobs whose message reached a dead-letter queue without the worker giving
 * them up. SQS moves a message there by itself once it has been delivered
 * `maxReceiveCount` times: when the worker running its last delivery died,
 * say. No code of ours runs then, so the worker looks through the dead-letter
 * queues now and then, fails each such job with its reason and hands its
 * conversation's turn on. The messages stay where they are, for a redrive
 * (see lib/core/retry.ts); one from before its job was retried is left alone.
 */
import { errorMessage } from "../core/error_message.ts";
import { notifyCallback } from "./callbacks.ts";
import type { Logger } from "../core/log.ts";
import { type QueueRef, queuesOf } from "../core/queue.ts";
import type { Services } from "../core/services.ts";
import { isFinished } from "../core/store.ts";
import { advanceTurn } from "../core/turns.ts";

/** Messages read per sweep and queue at most, so a huge dead-letter queue costs a bounded amount each time. */
const MAX_PER_SWEEP = 100;
const BATCH = 10;
/** The longest a sweep hides a dead letter it has read. */
const MAX_HIDE_SECONDS = 10;

/** Options for {@linkcode sweepDeadLetters}. */
export interface SweepOptions {
  logger: Logger;
  /** The queues whose dead-letter queues to look through: every lane of every backend served. */
  queues: readonly QueueRef[];
  /** Each queue's delivery limit, for the reason given. */
  maxReceiveCount: (queue: QueueRef) => number;
}

/** Looks through each queue's dead-letter queue once; returns how many jobs it gave up. */
export async function sweepDeadLetters(services: Services, options: SweepOptions): Promise<number> {
  const { queue, store, config } = services;
  let givenUp = 0;
  for (const from of options.queues) {
    for (let read = 0; read < MAX_PER_SWEEP;) {
      const tickets = await queue.receiveDeadLetters(from, {
        maxMessages: BATCH,
        // Hidden long enough for this sweep to page through the queue, and no
        // longer: a redrive moves only the messages nobody is reading.
        hideSeconds: Math.min(config.deadLetterSweepSeconds, MAX_HIDE_SECONDS),
      });
      if (tickets.length === 0) break;
      read += tickets.length;
      for (const ticket of tickets) {
        if (!ticket.job_id || ticket.line_check) continue;
        const job = await store.getJob(ticket.job_id);
        if (!job || isFinished(job)) continue;
        // A message from before the job was sent back to run: a newer one runs it.
        if ((ticket.generation ?? 0) !== (job.generation ?? 0)) continue;
        const reason = `Gave up: delivered ${
          options.maxReceiveCount(from)
        } times without finishing; its message is in backend "${from.backend}"'s ${from.lane} dead-letter queue`;
        await store.failJob(job.job_id, reason);
        await advanceTurn(services, ticket.conversation_id, job.job_id, ticket);
        givenUp++;
        options.logger.error("Job given up from the dead-letter queue", {
          job_id: job.job_id,
          backend: from.backend,
          lane: from.lane,
          error: reason,
        });
        // Not awaited: a slow receiver must not hold up the sweep.
        notifyCallback(job, {
          services,
          logger: options.logger,
          signal: AbortSignal.timeout(60_000),
        })
          .catch((err) =>
            options.logger.warn("Callback not delivered", {
              job_id: job.job_id,
              error: errorMessage(err),
            })
          );
      }
    }
  }
  return givenUp;
}

/** The key of a queue in the map of {@linkcode readRedriveLimits}. */
export function queueKey(queue: QueueRef): string {
  return `${queue.backend}/${queue.lane}`;
}

/**
 * Each queue's delivery limit (its redrive policy's `maxReceiveCount`), by
 * {@linkcode queueKey}, for every lane of the backends the worker serves.
 * Throws, naming the queue and the command that mends it, when a queue cannot
 * be read or has no dead-letter queue: failed jobs would be retried forever.
 */
export async function readRedriveLimits(services: Services): Promise<Map<string, number>> {
  const limits = new Map<string, number>();
  for (const queue of queuesOf(services.backends.map((b) => b.name))) {
    const where = `backend "${queue.backend}"'s ${queue.lane} queue`;
    const limit = await services.queue.maxReceiveCount(queue).catch((err) => {
      throw new Error(
        `Cannot start worker: cannot read ${where}: ${errorMessage(err)}; run \`deno task setup\``,
      );
    });
    if (limit === undefined) {
      throw new Error(
        `Cannot start worker: ${where} has no dead-letter queue, so failed jobs would be retried forever; run \`deno task setup\``,
      );
    }
    limits.set(queueKey(queue), limit);
  }
  return limits;
}
