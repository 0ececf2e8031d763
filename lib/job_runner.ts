/** Runs one received job: history, backend call, atomic append, and what to do when it fails. */
import { backendNamed } from "./backends.ts";
import { chatCompletion } from "./llm_client.ts";
import type { Logger } from "./log.ts";
import { withoutImages } from "./messages.ts";
import type { ReceivedJob } from "./queue.ts";
import type { Services } from "./services.ts";
import { JobNotFoundError } from "./store.ts";

/** What {@linkcode runJob} needs besides the message. */
export interface RunJobContext {
  services: Services;
  logger: Logger;
  /** Deliveries after which the lane moves the message to its dead-letter queue. */
  maxReceiveCount: number;
}

/** How a job run ended. */
export type RunOutcome = "succeeded" | "duplicate" | "retrying" | "failed" | "missing";

/** Runs a job and settles its message: deleted on success, left for redelivery on failure. */
export async function runJob(message: ReceivedJob, context: RunJobContext): Promise<RunOutcome> {
  const { store, queue, backends, config } = context.services;
  const jobId = message.ticket.job_id;
  const attempt = message.receiveCount;
  const fields = { job_id: jobId, lane: message.lane, attempt };

  let job;
  try {
    job = await store.startJob(jobId, attempt);
  } catch (err) {
    if (!(err instanceof JobNotFoundError)) throw err;
    // Left on the queue: it reaches the dead-letter queue, where someone can look at it.
    context.logger.error("Job record missing; message left for the dead-letter queue", fields);
    return "missing";
  }
  if (!job) {
    context.logger.info("Job already succeeded; dropping duplicate delivery", fields);
    await queue.delete(message);
    return "duplicate";
  }

  const started = performance.now();
  try {
    const backend = backendNamed(backends, job.route);
    if (!backend) throw new Error(`No backend named "${job.route}" is configured`);
    const history = (await store.getConversation(job.conversation_id))?.messages ?? [];
    const messages = [...history, job.user_message];
    const reply = await chatCompletion(
      backend,
      backend.images ? messages : withoutImages(messages),
      {
        model: job.model,
        timeoutMs: config.llmTimeoutMs,
      },
    );
    const result = await store.completeJob(job, reply);
    await queue.delete(message);
    context.logger.info("Job succeeded", {
      ...fields,
      route: job.route,
      history_messages: history.length,
      ms: Math.round(performance.now() - started),
      already_completed: result === "already_completed" || undefined,
    });
    return "succeeded";
  } catch (err) {
    const reason = (err as Error).message;
    if (attempt >= context.maxReceiveCount) {
      await store.failJob(jobId, `Gave up after ${attempt} attempts: ${reason}`);
      // Visible at once, so the queue's next receive moves it to the dead-letter queue.
      await queue.release(message, 0);
      context.logger.error("Job failed for good; message goes to the dead-letter queue", {
        ...fields,
        error: reason,
      });
      return "failed";
    }
    await store.retryJob(
      jobId,
      `Attempt ${attempt} of ${context.maxReceiveCount} failed: ${reason}`,
    );
    await queue.release(message, config.retryDelaySeconds);
    context.logger.warn("Job attempt failed; will retry", { ...fields, error: reason });
    return "retrying";
  }
}
