/**
 * One job at a time per conversation, in the order sent: each conversation
 * has a line of unfinished jobs, and only the job at its head is on the queue.
 * A job that ends hands the turn to the next one by enqueuing it.
 *
 * Every step can be cut off by a crash. A worker that dies mid hand-off
 * leaves its message on the queue, and the redelivery hands the turn on
 * again. A front door that dies after writing a job at the head of its line
 * and before enqueuing it leaves nothing to redeliver, so every job that joins
 * a busy line also sends a delayed line check: when it comes round, a head
 * that has waited unstarted for `LINE_CHECK_S` is sent again. A duplicate send
 * is harmless: a job is claimed at most once at a time, and finished once.
 */
import { type Job, ticketFor } from "./jobs.ts";
import { laneFor } from "./queue.ts";
import type { Services } from "./services.ts";
import { isFinished } from "./store.ts";

/**
 * Takes `finishedJobId` off the head of the conversation's line, if it is
 * there, and enqueues the job that is now first. Safe to repeat: a job that
 * finished or vanished at the head is passed over as well.
 */
export async function advanceTurn(
  services: Services,
  conversationId: string,
  finishedJobId: string,
  options: { stateless?: boolean } = {},
): Promise<void> {
  if (options.stateless) return; // a stateless job has no line
  const { store, queue } = services;
  let done = finishedJobId;
  while (true) {
    const next = await store.passTurn(conversationId, done);
    if (!next) return;
    const job = await store.getJob(next);
    if (!job || isFinished(job)) {
      done = next;
      continue;
    }
    // A job that never started has never been on the queue: this is its turn.
    if (job.status === "queued" && job.attempts === 0) {
      await queue.send(laneFor(job.priority), ticketFor(job));
    }
    return;
  }
}

/**
 * Sends the delayed line check for a job that joined a busy line, on its own
 * backend's queue: whoever serves that backend looks at the line. (Whatever
 * backend the head job is for, the check sends it to that backend's queue.)
 */
export async function scheduleLineCheck(services: Services, job: Job): Promise<void> {
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
   * Set by a line check: it comes round `LINE_CHECK_S` after a job joined the
   * line behind the head, so an unstarted head has waited at least that long.
   */
  lineCheck?: boolean;
}

/**
 * Frees a line whose head can no longer run: its record is gone, it finished
 * long ago without handing the turn on, or its last permitted attempt was cut
 * off (the worker died) long enough ago that its message has gone to the
 * dead-letter queue. A head that has waited unstarted for `LINE_CHECK_S` may
 * never have been enqueued: it is sent again.
 */
export async function unblockLine(
  services: Services,
  conversationId: string,
  options: UnblockOptions = {},
): Promise<void> {
  const { store, queue, config } = services;
  const head = await store.headOfLine(conversationId);
  if (!head) return;
  const job = await store.getJob(head);
  const unsentSince = Date.now() - config.lineCheckSeconds * 1000;
  const unstarted = job?.status === "queued" && job.attempts === 0;
  // A retried job has waited since it was sent back, not since it was created.
  const queuedAt = Date.parse(job?.retried_at ?? job?.created_at ?? "");
  if (unstarted && (options.lineCheck || queuedAt <= unsentSince)) {
    await queue.send(laneFor(job.priority), ticketFor(job));
    return;
  }
  // A worker that finishes a job hands the turn on at once, and a redelivery of
  // its message repeats that; only a head stuck for longer than that needs help.
  const longAgo = Date.now() - 2 * config.visibilityTimeoutSeconds * 1000;
  const abandoned = job?.status === "running" && job.attempts >= config.maxAttempts &&
    (job.lease_until ?? 0) < longAgo;
  if (abandoned) {
    await store.failJob(head, "Gave up: the worker stopped during the last attempt");
  }
  const finishedLongAgo = job !== undefined && isFinished(job) &&
    Date.parse(job.updated_at) < longAgo;
  if (!job || finishedLongAgo || abandoned) {
    await advanceTurn(services, conversationId, head);
  }
}
