/**
 * One job at a time per conversation, in the order sent: each conversation
 * has a line of unfinished jobs, and only the job at its head is on the queue.
 * A job that ends hands the turn to the next one by sending it.
 *
 * A job's message is sent once. Whoever sends it records that it went
 * (`sent_at`, for the job's generation), and a hand-over or a line check
 * sends only a job that has no such record: a delivery of a finished job, a
 * line check or a long backlog never sends a waiting job again.
 *
 * Every step can be cut off by a crash. A worker that dies mid hand-over
 * leaves its message on the queue, and the redelivery hands the turn on
 * again. A front door that dies after writing a job at the head of its line
 * and before sending it leaves nothing to redeliver: so a job that joins a
 * line whose head the queue does not hold (unsent, finished, gone) sends a
 * delayed line check, which sends that head or hands its turn on; and a
 * repeat of the request with its `Idempotency-Key` sends it at once.
 */
import { type Job, ticketFor } from "./jobs.ts";
import { laneFor } from "./queue.ts";
import type { Services } from "./services.ts";
import { isFinished } from "./store.ts";

/** Sends a job's message to its backend's queue, then records that it went. */
export async function sendJob(services: Services, job: Job): Promise<void> {
  await services.queue.send(laneFor(job.priority), ticketFor(job));
  await services.store.markSent(job.job_id, job.generation ?? 0);
}

/** Whether a job waits for the message of its generation: queued, never started, never sent. */
export function awaitsSending(job: Job): boolean {
  return job.status === "queued" && job.attempts === 0 && job.sent_at === undefined;
}

/**
 * Whether the queue holds a message that will run the job or hand its turn
 * on: it was sent, it runs, or it waits out a retry delay.
 */
export function heldByQueue(job: Job): boolean {
  return job.status === "running" ||
    (job.status === "queued" && (job.attempts > 0 || job.sent_at !== undefined));
}

/**
 * Takes `finishedJobId` off the head of the conversation's line, if it is
 * there, and sends the job that is now first unless it was sent already.
 * Safe to repeat: a job that finished or vanished at the head is passed over
 * as well.
 */
export async function advanceTurn(
  services: Services,
  conversationId: string,
  finishedJobId: string,
  options: { stateless?: boolean } = {},
): Promise<void> {
  if (options.stateless) return; // a stateless job has no line
  const { store } = services;
  let done = finishedJobId;
  while (true) {
    const next = await store.passTurn(conversationId, done);
    if (!next) return;
    const job = await store.getJob(next);
    if (!job || isFinished(job)) {
      done = next;
      continue;
    }
    if (awaitsSending(job)) await sendJob(services, job);
    return;
  }
}

/**
 * After `job` joined a busy line: frees the line's head if it can no longer
 * run (see {@linkcode unblockLine}), and when the queue does not hold the
 * head, sends a delayed line check on `job`'s backend's queue, to look again
 * once the head has had `LINE_CHECK_S` to be sent or handed on.
 */
export async function watchLine(services: Services, job: Job): Promise<void> {
  if (await unblockLine(services, job.conversation_id)) return;
  await services.queue.send(
    laneFor(job.priority),
    {
      job_id: job.job_id,
      conversation_id: job.conversation_id,
      route: job.route,
      line_check: true,
    },
    { delaySeconds: services.config.lineCheckSeconds },
  );
}

/** Options for {@linkcode unblockLine}. */
export interface UnblockOptions {
  /**
   * Set by a line check: it comes round `LINE_CHECK_S` after a job joined
   * the line, so an unsent head has had that long to be sent, and a finished
   * head that long to hand its turn on.
   */
  lineCheck?: boolean;
}

/**
 * Frees a line whose head can no longer run: its record is gone, it finished
 * without handing the turn on, or its last permitted attempt was cut off
 * (the worker died) long enough ago that its message has gone to the
 * dead-letter queue. A head never sent that has waited `LINE_CHECK_S` is
 * sent. Returns whether the line is now empty or its head held by the queue.
 */
export async function unblockLine(
  services: Services,
  conversationId: string,
  options: UnblockOptions = {},
): Promise<boolean> {
  const { store, config } = services;
  const head = await store.headOfLine(conversationId);
  if (!head) return true;
  const job = await store.getJob(head);
  if (job && awaitsSending(job)) {
    // A retried job has waited since it was sent back, not since it was created.
    const queuedAt = Date.parse(job.retried_at ?? job.created_at);
    if (!options.lineCheck && queuedAt > Date.now() - config.lineCheckSeconds * 1000) {
      return false; // its sender may be at it now
    }
    await sendJob(services, job);
    return true;
  }
  if (job && heldByQueue(job) && !abandoned(job, services)) return true;
  // A worker that finishes a job hands the turn on at once, and a redelivery of
  // its message repeats that; only a head stuck for longer than that needs help.
  const longAgo = Date.now() - 2 * config.visibilityTimeoutSeconds * 1000;
  if (job && abandoned(job, services)) {
    await store.failJob(head, "Gave up: the worker stopped during the last attempt");
  } else if (
    job && isFinished(job) && !options.lineCheck && Date.parse(job.updated_at) >= longAgo
  ) {
    return false;
  }
  await advanceTurn(services, conversationId, head);
  return true;
}

/** A head whose last permitted attempt's worker died: its lease lapsed long ago. */
function abandoned(job: Job, services: Services): boolean {
  const { config } = services;
  const longAgo = Date.now() - 2 * config.visibilityTimeoutSeconds * 1000;
  return job.status === "running" && job.attempts >= config.maxAttempts &&
    (job.lease_until ?? 0) < longAgo;
}
