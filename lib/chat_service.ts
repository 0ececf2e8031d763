/** What the front door does with a chat message, and what it says about its own health. */
import { chooseBackend } from "./backends.ts";
import type { ChatRequest } from "./chat_request.ts";
import { ApiError } from "./errors.ts";
import { jsonBytes } from "./job_runner.ts";
import { type Job, newJob, ticketFor } from "./jobs.ts";
import { userMessage } from "./messages.ts";
import { laneFor, LANES, type QueueDepth } from "./queue.ts";
import type { Services } from "./services.ts";
import { advanceTurn, unblockLine } from "./turns.ts";

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

/**
 * Checks a chat request against the limits, writes its job and puts it in its
 * conversation's line; the job goes on the queue now if it is first in line.
 */
export async function submitChat(services: Services, request: ChatRequest): Promise<ChatAccepted> {
  const { store, queue, backends, config } = services;
  const message = userMessage(request.userMessage, request.imageUrls);
  const messageBytes = jsonBytes(message);
  if (messageBytes > config.maxMessageBytes) {
    throw new ApiError(
      413,
      `Message too large: ${messageBytes} bytes with its image URLs, over MAX_MESSAGE_BYTES (${config.maxMessageBytes})`,
      { param: "user_message", code: "message_too_large" },
    );
  }
  await ensureWorkerAlive(services);
  const conversation = await store.getConversation(request.conversationId);
  const history = conversation?.messages ?? [];
  const conversationBytes = jsonBytes(history) + messageBytes;
  if (conversationBytes > config.conversationMaxBytes) {
    throw new ApiError(
      413,
      `Conversation is full: "${request.conversationId}" holds ${
        jsonBytes(history)
      } bytes and this message would take it over CONVERSATION_MAX_BYTES (${config.conversationMaxBytes}); start a new conversation_id`,
      { param: "conversation_id", code: "conversation_full" },
    );
  }

  const backend = chooseBackend(backends, request.imageUrls.length > 0);
  const job = newJob({
    conversationId: request.conversationId,
    route: backend.name,
    model: backend.model,
    priority: request.priority,
    userMessage: message,
    ttlDays: config.jobTtlDays,
  });
  const { first } = await store.createJob(job);
  if (first) {
    try {
      await queue.send(laneFor(job.priority), ticketFor(job));
    } catch (err) {
      await store.failJob(job.job_id, `Could not be enqueued: ${(err as Error).message}`);
      await advanceTurn(services, job.conversation_id, job.job_id).catch(() => {});
      throw new ApiError(503, `Cannot enqueue job: ${(err as Error).message}`, { cause: err });
    }
  } else {
    await unblockLine(services, job.conversation_id);
  }
  return {
    job_id: job.job_id,
    conversation_id: job.conversation_id,
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
      error: `Cannot read queue or worker state: ${(err as Error).message}`,
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
