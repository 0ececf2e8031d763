/** What the front door does with a chat message: check it, write it, and queue it in turn. */
import type { ChatRequest } from "./chat_request.ts";
import { ApiError } from "./errors.ts";
import type { Target } from "./model_directory.ts";
import { BlobWritesHeld, setPayloadsAside } from "./payloads.ts";
import { BlobQuotaError } from "../core/blobs.ts";
import { routeMessage } from "./routing.ts";
import { isStateless, type Job, newJob, type NewJobOptions, type Priority } from "../core/jobs.ts";
import { type ChatMessage, hasImage, jsonBytes, userMessage } from "../core/messages.ts";
import { scopedConversationId } from "../core/owners.ts";
import type { Services } from "../core/services.ts";
import { sleep } from "../core/sleep.ts";
import type { HeldIdempotencyKey, IdempotencyClaim } from "../core/store.ts";
import { advanceTurn, awaitsSending, sendJob, watchLine } from "../core/turns.ts";
import { checkRepeat } from "./idempotency.ts";
import { admitJob } from "./key_limits.ts";
import { estimatePromptTokens } from "../core/usage_estimate.ts";
import { storageFailure, storageProblem } from "./storage_errors.ts";

/** What `POST /chat` answers. */
export interface ChatAccepted {
  job_id: string;
  conversation_id: string;
  status: Job["status"];
  route: string;
  model: string;
  priority: Job["priority"];
  history_messages: number;
  /** Unfinished jobs of this conversation ahead of this one. */
  waiting_behind: boolean;
}

/** A job to submit, from `POST /chat` or `POST /v1/chat/completions`. */
export interface JobSpec {
  /** The client's conversation id; for a stateless job, any unique id. */
  conversationId: string;
  /** The caller's owner id (see lib/owners.ts), when API keys are configured. */
  owner?: string;
  userMessage: ChatMessage;
  priority: Priority;
  /** The model the client asked for; without one the message is routed by content. */
  model?: string;
  recordFields?: Omit<NonNullable<NewJobOptions["recordFields"]>, "owner" | "limits">;
  /** Checks the request against the backend it was routed to; throws a 400 for what it would refuse. */
  checkTarget?: (target: Target) => void;
  /** The request's `Idempotency-Key`, claimed for the job it makes (see lib/http/idempotency.ts). */
  idempotency?: IdempotencyClaim;
  /**
   * Keeps a stateless job's blobs `BLOB_TTL_DAYS`, not a day: a stored
   * response, whose chat a later request continues.
   */
  keepPayloads?: boolean;
}

/** What a submission answers: the job, and whether it is an earlier request's. */
export interface Submitted {
  accepted: ChatAccepted;
  /** The request repeated an earlier one's idempotency key: the job is that request's. */
  replayed: boolean;
}

/** Submits a `POST /chat` request. */
export function submitChat(
  services: Services,
  request: ChatRequest,
  options: Pick<JobSpec, "owner" | "idempotency"> = {},
): Promise<Submitted> {
  return submitJob(services, {
    ...options,
    conversationId: request.conversationId,
    userMessage: userMessage(request.userMessage, request.imageUrls),
    priority: request.priority,
    model: request.model,
    recordFields: {
      api: "chat",
      ...(request.callbackUrl ? { callback_url: request.callbackUrl } : {}),
    },
  });
}

/**
 * Checks a job against the limits, picks its backend and model from what the
 * workers serve, writes it and puts it in its conversation's line; the job
 * goes on the backend's queue now if it is first in line. A request that
 * repeats an earlier one's idempotency key makes nothing: it answers with
 * that request's job, and sends it if its front door stopped before it did.
 */
export async function submitJob(services: Services, spec: JobSpec): Promise<Submitted> {
  const { store, config } = services;
  if (spec.idempotency) {
    const held = await store.findIdempotencyKey(spec.idempotency.id);
    if (held) return await replay(services, spec, held);
  }
  const message = spec.userMessage;
  checkMessageSize(message, config);
  const images = [...(spec.recordFields?.context ?? []), message].some(hasImage);
  const embeddings = spec.recordFields?.api === "embeddings";
  const target = await routeMessage(
    services,
    { model: spec.model, images, embeddings },
    spec.checkTarget,
  );
  const mode = spec.recordFields?.mode ?? "conversation";
  // Written only once the job passes every check: a refused request changes nothing. A stateless
  // request's blobs are needed only until its job ends: they are kept a day, unless kept on purpose.
  const blobs = new BlobWritesHeld(services.blobs, {
    shortLived: mode === "stateless" && !spec.keepPayloads,
  });
  const aside = await setPayloadsAside(
    blobs,
    spec.owner,
    message,
    spec.recordFields?.context,
    spec.recordFields?.params,
  );
  const storedId = mode === "stateless"
    ? spec.conversationId
    : scopedConversationId(spec.owner, spec.conversationId);
  // Only a conversation that grows by appending needs its history read here.
  const history = mode === "conversation"
    ? (await store.getConversation(storedId))?.messages ?? []
    : [];
  const messageBytes = jsonBytes(aside.userMessage);
  if (mode === "conversation" && jsonBytes(history) + messageBytes > config.conversationMaxBytes) {
    throw new ApiError(
      413,
      `Conversation is full: "${spec.conversationId}" holds ${
        jsonBytes(history)
      } bytes and this message would take it over CONVERSATION_MAX_BYTES (${config.conversationMaxBytes}); start a new conversation_id`,
      { param: "conversation_id", code: "conversation_full" },
    );
  }

  const job = newJob({
    conversationId: storedId,
    route: target.backend.name,
    model: target.model,
    priority: spec.priority,
    userMessage: aside.userMessage,
    ttlDays: config.jobTtlDays,
    recordFields: {
      ...spec.recordFields,
      context: aside.context,
      context_ref: aside.contextRef,
      params: aside.params,
      params_ref: aside.paramsRef,
      owner: spec.owner,
    },
  });
  // Counted against the key's limits last of all the checks, and before anything is written.
  const admission = await admitJob(services, {
    owner: spec.owner,
    jobId: job.job_id,
    tokens: estimatePromptTokens(
      [...(spec.recordFields?.context ?? []), ...history, message],
      spec.recordFields?.params?.tools,
    ),
  });
  if (admission) job.limits = admission.limits;
  try {
    await blobs.write().catch((err) => {
      throw err instanceof BlobQuotaError ? blobQuotaRefusal(err, config) : err;
    });
  } catch (err) {
    await admission?.undo();
    throw err;
  }
  const historyMessages = mode === "conversation"
    ? history.length
    : spec.recordFields?.context?.length ?? 0;
  const idempotency = spec.idempotency &&
    { ...spec.idempotency, answer: { history_messages: historyMessages } };
  const created = await store.createJob(job, { idempotency }).catch(async (err) => {
    await admission?.undo();
    throw err;
  });
  // Another request with the same key was a moment quicker: this one counts for nothing.
  if (created.state === "repeated") {
    await admission?.undo();
    return await replay(services, spec, created);
  }
  await queueInTurn(services, job, created.first, spec.idempotency);
  return {
    accepted: acceptedAnswer(spec, job, { historyMessages, waitingBehind: !created.first }),
    replayed: false,
  };
}

/**
 * Sends a new job now if it is first in its line; otherwise watches the line.
 * When the queue refuses, the job is failed (its line goes on) and its
 * idempotency key freed, and the client gets a 503. Neither the job's reason
 * nor the answer holds the queue's own error text (it names accounts and
 * roles): the error handler logs it.
 */
async function queueInTurn(
  services: Services,
  job: Job,
  first: boolean,
  idempotency: IdempotencyClaim | undefined,
): Promise<void> {
  try {
    if (first) await sendJob(services, job);
    else await watchLine(services, job);
  } catch (err) {
    const { store } = services;
    await store.failJob(job.job_id, `Could not be enqueued: ${storageProblem(err, "the queue")}`);
    if (first) await advanceTurn(services, job.conversation_id, job.job_id).catch(() => {});
    if (idempotency) await store.releaseIdempotencyKey(idempotency.id, job.job_id).catch(() => {});
    throw storageFailure(err, { action: "Cannot enqueue job", what: "the queue" });
  }
}

/**
 * How long after a job was written a repeat of its request leaves sending it
 * to the request that wrote it, which does so within milliseconds unless its
 * front door stopped.
 */
const SENDER_GRACE_MS = 3_000;
const SENDER_POLL_MS = 100;

/**
 * Answers a request that repeats an earlier one's idempotency key with that
 * request's job. A job its front door wrote but never queued (it stopped in
 * between) is lined up and sent now.
 */
async function replay(
  services: Services,
  spec: JobSpec,
  held: HeldIdempotencyKey,
): Promise<Submitted> {
  checkRepeat(spec.idempotency!, held);
  const { store } = services;
  let job = await store.getJob(held.jobId);
  if (!job) {
    throw new ApiError(
      409,
      `Idempotency key reused: its job ${held.jobId} is no longer kept (JOB_TTL_DAYS); send a new key`,
      { code: "idempotency_key_reused", param: "Idempotency-Key", jobId: held.jobId },
    );
  }
  // Its own request may still be on its way to send it: give that a moment.
  for (const waitUntil = Date.parse(job.created_at) + SENDER_GRACE_MS; awaitsSending(job);) {
    if (Date.now() >= waitUntil) break;
    await sleep(SENDER_POLL_MS);
    job = await store.getJob(held.jobId) ?? job;
  }
  let first = true;
  if (awaitsSending(job)) {
    first = isStateless(job) || (await store.joinLine(job)).first;
    if (first) {
      await sendJob(services, job).catch((err) => {
        throw storageFailure(err, { action: "Cannot enqueue job", what: "the queue" });
      });
      job = await store.getJob(job.job_id) ?? job;
    }
  } else if (!isStateless(job) && job.status === "queued") {
    first = (await store.headOfLine(job.conversation_id)) === job.job_id;
  }
  const historyMessages = Number(held.answer?.history_messages ?? 0);
  return {
    accepted: acceptedAnswer(spec, job, { historyMessages, waitingBehind: !first }),
    replayed: true,
  };
}

/** What `POST /chat` answers for a job. */
function acceptedAnswer(
  spec: JobSpec,
  job: Job,
  counts: { historyMessages: number; waitingBehind: boolean },
): ChatAccepted {
  return {
    job_id: job.job_id,
    conversation_id: spec.conversationId,
    status: job.status,
    route: job.route,
    model: job.model,
    priority: job.priority,
    history_messages: counts.historyMessages,
    waiting_behind: counts.waitingBehind,
  };
}

/**
 * The new message against its limits: its text against `MAX_MESSAGE_BYTES`
 * (the history a client re-sends is context, not a new message), and each
 * inline image against `IMAGE_MAX_BYTES`. An image's data does not count as
 * text: it has its own limit.
 */
function checkMessageSize(message: ChatMessage, config: Services["config"]): void {
  const parts = Array.isArray(message.content) ? message.content : [];
  const textOnly = {
    ...message,
    content: Array.isArray(message.content)
      ? parts.map((p) =>
        p.type === "image_url" && /^\s*data:/i.test(p.image_url.url)
          ? { ...p, image_url: { url: "data:" } }
          : p
      )
      : message.content,
  };
  const bytes = jsonBytes(textOnly);
  if (bytes > config.maxMessageBytes) {
    throw new ApiError(
      413,
      `Message too large: ${bytes} bytes, over MAX_MESSAGE_BYTES (${config.maxMessageBytes})`,
      { param: "user_message", code: "message_too_large" },
    );
  }
  for (const part of parts) {
    if (part.type !== "image_url") continue;
    const size = dataUrlBytes(part.image_url.url);
    if (size !== undefined && size > config.imageMaxBytes) {
      throw new ApiError(
        413,
        `Image too large: ${size} bytes, over IMAGE_MAX_BYTES (${config.imageMaxBytes})`,
        { param: "image_url", code: "image_too_large" },
      );
    }
  }
}

/** A 429 for a request whose blobs would take its key over `BLOB_KEY_MAX_BYTES`. */
function blobQuotaRefusal(err: BlobQuotaError, config: Services["config"]): ApiError {
  return new ApiError(
    429,
    `Blob storage full: this key's images and long chats take ${err.held} bytes, and this request's ${err.adding} more would pass BLOB_KEY_MAX_BYTES (${err.limit}); they are deleted ${config.blobTtlDays} days after their last use (BLOB_TTL_DAYS), a stateless request's after a day: wait, or raise BLOB_KEY_MAX_BYTES`,
    { code: "blob_quota_exceeded", type: "insufficient_quota" },
  );
}

/** The decoded size of a base64 data: URL, or undefined for any other URL. */
function dataUrlBytes(url: string): number | undefined {
  const match = /^\s*data:[^,]*;base64,/i.exec(url);
  if (!match) return undefined;
  const data = url.length - match[0].length;
  const padding = url.endsWith("==") ? 2 : url.endsWith("=") ? 1 : 0;
  return Math.floor(data / 4) * 3 - padding;
}
