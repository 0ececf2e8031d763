/** What the front door does with a chat message, and what it says about its own health. */
import { errorMessage } from "./error_message.ts";
import { type Backend, chooseBackend } from "./backends.ts";
import type { ChatRequest } from "./chat_request.ts";
import { ApiError } from "./errors.ts";
import { type Job, newJob, type NewJobOptions, type Priority, ticketFor } from "./jobs.ts";
import { type ChatMessage, hasImage, jsonBytes, userMessage } from "./messages.ts";
import { scopedConversationId } from "./owners.ts";
import { laneFor, LANES, type QueueDepth } from "./queue.ts";
import type { Services } from "./services.ts";
import { advanceTurn, scheduleLineCheck, unblockLine } from "./turns.ts";

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
  /** The backend to use; default chosen by content (images go to a backend that takes them). */
  backend?: Backend;
  extra?: Omit<NonNullable<NewJobOptions["extra"]>, "owner">;
}

/** Submits a `POST /chat` request. */
export function submitChat(
  services: Services,
  request: ChatRequest,
  owner?: string,
): Promise<ChatAccepted> {
  return submitJob(services, {
    conversationId: request.conversationId,
    owner,
    userMessage: userMessage(request.userMessage, request.imageUrls),
    priority: request.priority,
    extra: request.callbackUrl ? { callback_url: request.callbackUrl } : undefined,
  });
}

/**
 * Checks a job against the limits, writes it and puts it in its
 * conversation's line; the job goes on the queue now if it is first in line.
 */
export async function submitJob(services: Services, spec: JobSpec): Promise<ChatAccepted> {
  const { store, queue, backends, config } = services;
  const message = spec.userMessage;
  const messageBytes = jsonBytes([...(spec.extra?.context ?? []), message]);
  if (messageBytes > config.maxMessageBytes) {
    throw new ApiError(
      413,
      `Message too large: ${messageBytes} bytes with its image URLs, over MAX_MESSAGE_BYTES (${config.maxMessageBytes})`,
      { param: "user_message", code: "message_too_large" },
    );
  }
  await ensureWorkerAlive(services);
  const stateless = spec.extra?.mode === "stateless";
  const storedId = stateless
    ? spec.conversationId
    : scopedConversationId(spec.owner, spec.conversationId);
  const history = stateless ? [] : (await store.getConversation(storedId))?.messages ?? [];
  if (jsonBytes(history) + messageBytes > config.conversationMaxBytes) {
    throw new ApiError(
      413,
      `Conversation is full: "${spec.conversationId}" holds ${
        jsonBytes(history)
      } bytes and this message would take it over CONVERSATION_MAX_BYTES (${config.conversationMaxBytes}); start a new conversation_id`,
      { param: "conversation_id", code: "conversation_full" },
    );
  }

  const backend = spec.backend ?? chooseBackend(backends, hasImage(message));
  const job = newJob({
    conversationId: storedId,
    route: backend.name,
    model: backend.model,
    priority: spec.priority,
    userMessage: message,
    ttlDays: config.jobTtlDays,
    extra: { ...spec.extra, owner: spec.owner },
  });
  const { first } = await store.createJob(job);
  try {
    if (first) {
      await queue.send(laneFor(job.priority), ticketFor(job));
    } else {
      await scheduleLineCheck(services, job);
    }
  } catch (err) {
    await store.failJob(job.job_id, `Could not be enqueued: ${errorMessage(err)}`);
    if (first) await advanceTurn(services, job.conversation_id, job.job_id).catch(() => {});
    throw new ApiError(503, `Cannot enqueue job: ${errorMessage(err)}`, { cause: err });
  }
  if (!first) await unblockLine(services, job.conversation_id);
  return {
    job_id: job.job_id,
    conversation_id: spec.conversationId,
    status: job.status,
    route: job.route,
    model: job.model,
    priority: job.priority,
    history_messages: history.length,
    waiting_behind: !first,
  };
}

/** What `GET /healthz` reports. */
export interface Health {
  status: "ok" | "degraded";
  backend: string;
  queues?: Record<string, QueueDepth>;
  worker: { last_seen: string | null; seconds_ago: number | null; stale: boolean };
  error?: string;
}

/** Queue depths and when a worker was last seen; never throws. */
export async function health(services: Services): Promise<Health> {
  const { store, queue, config } = services;
  try {
    const depths = await Promise.all(LANES.map((lane) => queue.depth(lane)));
    const seen = await store.lastWorkerSeen();
    const secondsAgo = seen ? Math.max(0, Math.round((Date.now() - seen.getTime()) / 1000)) : null;
    return {
      status: "ok",
      backend: config.backend,
      queues: Object.fromEntries(LANES.map((lane, i) => [lane, depths[i]])),
      worker: {
        last_seen: seen?.toISOString() ?? null,
        seconds_ago: secondsAgo,
        stale: isStale(secondsAgo, config),
      },
    };
  } catch (err) {
    return {
      status: "degraded",
      backend: config.backend,
      worker: { last_seen: null, seconds_ago: null, stale: true },
      error: `Cannot read queue or worker state: ${errorMessage(err)}`,
    };
  }
}

async function ensureWorkerAlive(services: Services): Promise<void> {
  const { config, store } = services;
  if (config.workerStaleSeconds === 0) return;
  const seen = await store.lastWorkerSeen();
  const secondsAgo = seen ? (Date.now() - seen.getTime()) / 1000 : null;
  if (isStale(secondsAgo, config)) {
    throw new ApiError(
      503,
      seen
        ? `No worker available: the last worker was seen ${
          Math.round(secondsAgo!)
        } s ago (WORKER_STALE_S is ${config.workerStaleSeconds}); start \`deno task worker\` beside your models`
        : "No worker available: no worker has ever been seen; start `deno task worker` beside your models",
      { code: "no_worker", type: "service_unavailable" },
    );
  }
}

function isStale(secondsAgo: number | null, config: Services["config"]): boolean {
  if (config.workerStaleSeconds === 0) return false;
  return secondsAgo === null || secondsAgo > config.workerStaleSeconds;
}
