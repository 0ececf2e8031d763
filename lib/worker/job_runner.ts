/** Runs one received job: claim, history, backend call, atomic append, and what to do when it fails. */
import { errorMessage } from "../core/error_message.ts";
import { backendNamed } from "../core/backends.ts";
import type { ModelInfo } from "../core/catalogue.ts";
import type { ImageCache } from "./image_cache.ts";
import { type FetchSlots, ImageError } from "./images.ts";
import { clientChat, PermanentJobError, requestFields, withImages } from "./job_inputs.ts";
import { BackendError, chatCompletion } from "./llm_client.ts";
import { fitContext } from "./context_fit.ts";
import { askForEmbeddings } from "./embedding_job.ts";
import type { AssembledReply } from "./reply_assembler.ts";
import { estimateUsage } from "../core/usage_estimate.ts";
import type { Logger } from "../core/log.ts";
import { type ChatMessage, jsonBytes, messageText, type Usage } from "../core/messages.ts";
import type { Job } from "../core/jobs.ts";
import type { ReceivedJob } from "../core/queue.ts";
import type { Services } from "../core/services.ts";
import { sleep } from "../core/sleep.ts";
import {
  JobNotFoundError,
  type JobResult,
  RecordTooLargeError,
  type StartResult,
} from "../core/store.ts";
import { redriveRequestFor, retryFailedJob } from "../core/retry.ts";
import { advanceTurn, unblockLine } from "../core/turns.ts";
import { notifyCallback } from "./callbacks.ts";
import { streamedReplyWriter } from "./streamed_reply.ts";

/** What {@linkcode runJob} needs besides the message. */
export interface RunJobContext {
  services: Services;
  logger: Logger;
  /** Deliveries after which the queue moves the message to its dead-letter queue. */
  maxReceiveCount: number;
  /** Aborted when the worker stops and can wait no longer: the job is handed back. */
  signal: AbortSignal;
  /**
   * Tells the worker to stop holding the message (its heartbeat keeps held
   * messages hidden); called just before the message is deleted, returned or
   * dead-lettered, so no heartbeat hides it again afterwards.
   */
  stopHolding?: () => void;
  /**
   * Told once the run has claimed the job: from then on the job's lease is
   * the run's, and the worker's heartbeat renews it. Never told for a job
   * another run holds, whose lease must run out if that run has died.
   */
  onClaimed?: () => void;
  /**
   * Waits for a free place at the route's backend and returns its release.
   * The worker holds more jobs than the backends run, so store and queue work
   * overlaps with model calls; only the call itself takes a place.
   */
  backendPlace?: (route: string) => Promise<() => void>;
  /**
   * Runs the fetching of the job's images outside its backend's room, so a
   * job waiting on a slow image host holds nothing another job needs.
   */
  fetchingImages?: <T>(work: () => Promise<T>) => Promise<T>;
  /** Turns to fetch images, per API key; without it a job fetches whenever it likes. */
  imageFetches?: FetchSlots;
  /** What the worker last learnt its backends serve: whether a model takes images, and which does. */
  catalogue?: {
    model(backend: string, id: string): ModelInfo | undefined;
    visionModel?(): { backend: string; model: string } | undefined;
  };
  /**
   * Takes a finished job's callback delivery off the run: the worker delivers
   * it outside the job's place, so a receiver that never answers holds no
   * backend. Without it, the callback is delivered before the run ends.
   */
  deliverCallback?: (job: Job) => void;
  /** Images inlined for earlier jobs; without it every job fetches its images again. */
  imageCache?: ImageCache;
  /** Told of each run that claimed the job, as it starts: the job as claimed. */
  onStart?: (job: Job) => void;
  /**
   * Told of each run that started the job, when it ends: for the worker's
   * metrics and its key's usage. `usage` comes with a success this run stored.
   */
  onRun?: (run: { job: Job; outcome: RunOutcome; ms: number; usage?: Usage }) => void;
}

/** How a job run ended. */
export type RunOutcome =
  | "succeeded"
  | "failed"
  | "retrying"
  | "interrupted"
  | "duplicate"
  | "line_checked"
  | "missing"
  | "unreadable"
  /** The job was sent back to run after this message was sent: a newer one runs it. */
  | "stale"
  /** A redriven dead letter whose job was sent back to run (see lib/core/retry.ts). */
  | "redriven"
  /** A redriven dead letter whose job cannot run again now: back to the dead-letter queue. */
  | "redrive_refused";

/** What each ending does, in this order: hand the turn on, stop holding, settle the message. */
export const ENDINGS: Readonly<
  Record<RunOutcome, { handOn: boolean; message: "delete" | "dead_letter" | "return" }>
> = {
  succeeded: { handOn: true, message: "delete" },
  failed: { handOn: true, message: "dead_letter" },
  retrying: { handOn: false, message: "return" },
  interrupted: { handOn: false, message: "return" },
  // A run that finished the job may have stopped before it handed the turn on.
  duplicate: { handOn: true, message: "delete" },
  line_checked: { handOn: false, message: "delete" },
  missing: { handOn: true, message: "dead_letter" },
  unreadable: { handOn: false, message: "dead_letter" },
  stale: { handOn: false, message: "delete" },
  redriven: { handOn: false, message: "delete" },
  redrive_refused: { handOn: false, message: "dead_letter" },
};

/** DynamoDB's item limit is 400 KB; this leaves room for the item's other attributes. */
const CONVERSATION_HARD_LIMIT_BYTES = 390_000;

/** Runs a job and settles its message: deleted on success, returned for a retry, or dead-lettered. */
export async function runJob(message: ReceivedJob, context: RunJobContext): Promise<RunOutcome> {
  const { store, config } = context.services;
  const { job_id: jobId, conversation_id: conversationId } = message.ticket;
  const delivery = message.receiveCount;
  const fields = { job_id: jobId, lane: message.lane, delivery };

  /**
   * The one way out, whose order is the correctness rule: the turn is handed
   * on before the message goes, so if that fails the redelivered message finds
   * the job finished and hands it on again; and the worker stops holding the
   * message before it is settled, so its heartbeat cannot hide it again.
   */
  const finish = async (outcome: RunOutcome, returnAfterSeconds = 0): Promise<RunOutcome> => {
    const ending = ENDINGS[outcome];
    if (ending.handOn) {
      await advanceTurn(context.services, conversationId, jobId, message.ticket);
    }
    context.stopHolding?.();
    const { queue } = context.services;
    if (ending.message === "delete") await queue.delete(message);
    else if (ending.message === "dead_letter") await queue.deadLetter(message);
    else await queue.returnAfter(message, returnAfterSeconds);
    return outcome;
  };

  if (!jobId) {
    context.logger.error("Unreadable message moved to the dead-letter queue", fields);
    return await finish("unreadable");
  }
  if (message.ticket.line_check) {
    await unblockLine(context.services, conversationId, { lineCheck: true });
    return await finish("line_checked");
  }

  // The history is read alongside the claim: this job is only on the queue once
  // the job before it in its conversation has finished, so the history is complete.
  const readHistory = () => {
    const read = message.ticket.stateless
      ? Promise.resolve([])
      : store.getConversation(conversationId).then((c) => c?.messages ?? []);
    read.catch(() => {}); // awaited below only when the claim succeeds
    return read;
  };
  let history = readHistory();
  let claim;
  try {
    claim = await store.startJob(jobId, config.visibilityTimeoutSeconds * 1000, {
      generation: message.ticket.generation,
    });
    if (claim.state === "busy") {
      context.logger.info("Job is held by another run; waiting for it to finish or lapse", fields);
      claim = await waitForClaim(message, claim.leaseUntil, context);
      history = readHistory();
    }
  } catch (err) {
    if (!(err instanceof JobNotFoundError)) throw err;
    context.logger.error("Job record missing; message moved to the dead-letter queue", fields);
    return await finish("missing");
  }
  if (claim.state === "finished") {
    const redriveAsked = await redriveRequestFor(store, claim.job);
    if (redriveAsked) return await finish(await redrive(message, claim.job, redriveAsked, context));
    context.logger.info("Job already finished or canceled; dropping this delivery", fields);
    return await finish("duplicate");
  }
  if (claim.state === "stale") {
    context.logger.info("Job was sent back to run after this message; dropping it", fields);
    // Should the newer message have been lost on its way, the line sends the job again.
    if (!message.ticket.stateless) await unblockLine(context.services, conversationId);
    return await finish("stale");
  }
  if (claim.state === "busy") {
    // Only when the worker is stopping: the message goes back for another worker.
    return await finish("interrupted");
  }

  const job = claim.job;
  context.onClaimed?.();
  context.onStart?.(job);
  const started = performance.now();
  const ran = (outcome: RunOutcome, usage?: Usage) =>
    context.onRun?.({ job, outcome, ms: performance.now() - started, usage });
  try {
    const { result: outcome, historyCount } = job.api === "embeddings"
      ? { result: await askForEmbeddings(job, context), historyCount: 0 }
      : await askBackend(job, await history, context);
    const result = await store.completeJob(job, outcome);
    // A delivery that finds the reply stored already counts nothing twice.
    ran("succeeded", result === "completed" ? outcome.usage : undefined);
    await finish("succeeded");
    context.logger.info("Job succeeded", {
      ...fields,
      route: job.route,
      history_messages: historyCount,
      ms: Math.round(performance.now() - started),
      already_completed: result === "already_completed" || undefined,
    });
    await callBack(job, context);
    return "succeeded";
  } catch (err) {
    const reason = errorMessage(err);
    // Only the log sees the backend's URL and its own words; the job record gets the reason.
    const detail = err instanceof BackendError ? err.detail : undefined;
    if (context.signal.aborted) {
      ran("interrupted");
      await store.retryJob(jobId, "Interrupted: the worker stopped before the job finished");
      context.logger.warn("Job interrupted by shutdown; returned for another worker", fields);
      return await finish("interrupted");
    }
    // The queue will not deliver this message again after its last permitted delivery.
    if (!isRetryable(err) || delivery >= context.maxReceiveCount) {
      const why = isRetryable(err)
        ? `Gave up after ${job.attempts} attempts: ${reason}`
        : `Failed for good: ${reason}`;
      await store.failJob(jobId, why);
      ran("failed");
      await finish("failed");
      context.logger.error("Job failed; message moved to the dead-letter queue", {
        ...fields,
        error: why,
        detail,
      });
      await callBack(job, context);
      return "failed";
    }
    ran("retrying");
    const delay = retryDelaySeconds(
      job.attempts,
      config.retryDelaySeconds,
      config.retryMaxDelaySeconds,
    );
    await store.retryJob(
      jobId,
      `Attempt ${job.attempts} failed (delivery ${delivery} of ${context.maxReceiveCount}): ${reason}`,
    );
    context.logger.warn("Job attempt failed; will retry", {
      ...fields,
      error: reason,
      detail,
      retry_in_s: delay,
    });
    return await finish("retrying", delay);
  }
}

/** Hands a finished job's callback to the worker, or delivers it here. */
async function callBack(job: Job, context: RunJobContext): Promise<void> {
  if (!job.callback_url) return;
  if (context.deliverCallback) context.deliverCallback(job);
  else await notifyCallback(job, context);
}

/**
 * A dead letter an operator asked to redrive: its job is sent back to run by
 * the rule of lib/core/retry.ts, with a message of its own, and this one goes;
 * when the rule refuses, this one goes back to the dead-letter queue.
 */
async function redrive(
  message: ReceivedJob,
  job: Job,
  requestedAt: Date,
  context: RunJobContext,
): Promise<RunOutcome> {
  const fields = { job_id: job.job_id };
  const result = await retryFailedJob(context.services, job.job_id);
  if (result?.state === "refused" && result.code !== "not_failed") {
    // Marked, so the redrive that sent it, if still copying, does not send it round again.
    message.ticket = { ...message.ticket, refused_redrive: requestedAt.toISOString() };
    context.logger.warn(
      "Redriven job not retried; its message goes back to the dead-letter queue",
      {
        ...fields,
        error: result.reason,
      },
    );
    return "redrive_refused";
  }
  context.logger.info("Redriven job sent back to run", { ...fields, retry: result?.state });
  return "redriven";
}

/**
 * Another run holds the job's lease: a duplicate delivery, or a run whose
 * worker died. The message is kept (the heartbeat keeps it hidden) rather
 * than put back, since putting it back would spend one of its deliveries.
 * Ends when the job finishes (this delivery is a duplicate), when the lease
 * lapses (the holder died: this delivery runs it), or when the worker stops.
 */
async function waitForClaim(
  message: ReceivedJob,
  leaseUntil: number,
  context: RunJobContext,
): Promise<StartResult> {
  const { store, config } = context.services;
  let claim: StartResult = { state: "busy", leaseUntil };
  while (claim.state === "busy" && !context.signal.aborted) {
    const waitMs = Math.min(
      Math.max(100, claim.leaseUntil - Date.now() + 100),
      config.visibilityTimeoutSeconds * 1000,
    );
    await sleep(waitMs, context.signal);
    if (context.signal.aborted) break;
    claim = await store.startJob(message.ticket.job_id, config.visibilityTimeoutSeconds * 1000, {
      generation: message.ticket.generation,
    });
  }
  return claim;
}

/** The delay before the next attempt: the base doubled for each attempt so far, up to a ceiling. */
export function retryDelaySeconds(
  attempt: number,
  baseSeconds: number,
  maxSeconds: number,
): number {
  return Math.min(maxSeconds, baseSeconds * 2 ** Math.max(0, attempt - 1));
}

/** Whether another attempt could succeed. */
export function isRetryable(err: unknown): boolean {
  if (
    err instanceof PermanentJobError || err instanceof ImageError ||
    err instanceof RecordTooLargeError
  ) return false;
  if (err instanceof BackendError) return err.retryable;
  return true;
}

/** The most messages a synced conversation keeps when stored (the client keeps them all). */
const STORED_MAX_MESSAGES = 400;

async function askBackend(
  job: Job,
  history: ChatMessage[],
  context: RunJobContext,
): Promise<{ result: JobResult; historyCount: number }> {
  const { backends, config } = context.services;
  const backend = backendNamed(backends, job.route);
  if (!backend) {
    throw new PermanentJobError(`No backend named "${job.route}" is configured on this worker`);
  }
  const mode = job.mode ?? "conversation";
  const [sent, params] = await Promise.all([
    clientChat(job, context.services.blobs),
    requestFields(job, context.services.blobs),
  ]);
  // The client's whole chat ("synced", "stateless"), or its system messages and the stored history.
  const before = mode === "conversation" ? [...sent, ...history] : sent;
  const fitted = fitContext([...before, job.user_message], {
    maxMessages: config.historyMaxMessages,
    maxBytes: config.historyMaxBytes,
  });
  const prepared = await withImages(fitted.messages, {
    job,
    backend,
    sent: [...sent, job.user_message],
    context,
  });
  const continuing = job.user_message.role === "assistant";
  const release = await (context.backendPlace?.(job.route) ?? Promise.resolve(() => {}));
  let reply: AssembledReply;
  try {
    reply = await chatCompletion(backend, prepared, {
      // As the backend lists it: a job routed by configuration to Ollama's `llava` asks for `llava:latest`.
      model: context.catalogue?.model(backend.name, job.model)?.id ?? job.model,
      idleTimeoutMs: config.llmTimeoutMs,
      maxReplyMs: config.llmMaxReplyMs,
      signal: context.signal,
      params: continuing && backend.kind === "vllm"
        ? { ...params, continue_final_message: true, add_generation_prompt: false }
        : params,
      onProgress: job.stream ? streamedReplyWriter(job.job_id, context) : undefined,
    });
  } finally {
    release();
  }
  // release() has handed this place to the job waiting for it: this job's store
  // calls wait one turn of the event loop, so that job calls its model first and
  // its request goes out during that turn, not after this job's store calls.
  await sleep(0);
  const result: JobResult = {
    reply: reply.message,
    finishReason: reply.finishReason,
    usage: reply.usage ?? estimateUsage(prepared, reply.message),
  };
  if (mode === "synced") {
    // What the client sent plus the reply; a continued reply joins the message it continues.
    const last = continuing ? continued(job.user_message, reply.message) : reply.message;
    const whole = continuing ? [...before, last] : [...before, job.user_message, reply.message];
    result.conversation = fitContext(whole, {
      maxMessages: STORED_MAX_MESSAGES,
      maxBytes: config.conversationMaxBytes,
    }).messages;
  } else if (mode === "conversation") {
    const bytes = jsonBytes([...history, job.user_message, reply.message]);
    if (bytes > CONVERSATION_HARD_LIMIT_BYTES) {
      throw new PermanentJobError(
        `Cannot store the reply: conversation "${job.conversation_id}" would grow to ${bytes} bytes, over the store's ${CONVERSATION_HARD_LIMIT_BYTES}-byte limit; start a new conversation_id`,
      );
    }
  }
  return { result, historyCount: fitted.messages.length - 1 };
}

/** An assistant message continued: its text followed by the continuation's. */
function continued(partial: ChatMessage, continuation: ChatMessage): ChatMessage {
  const message: ChatMessage = {
    ...continuation,
    content: messageText(partial) + messageText(continuation),
  };
  if (continuation.tool_calls === undefined) delete message.tool_calls;
  return message;
}
