/** Job records: what the front door promised and what the worker did about it. */
import type { StoredEmbeddings } from "./embeddings.ts";
import type { ChatMessage, StoredReplyMessage, Usage } from "./messages.ts";

/** Where a job is in its life; the last three are final. */
export type JobStatus = "queued" | "running" | "succeeded" | "failed" | "canceled";

/**
 * The fields of a client's request passed through to the backend as they
 * are: sampling (`temperature`, `top_p`, penalties, `seed`, `stop`,
 * `max_tokens`…), `tools` and `tool_choice`, `response_format`,
 * `reasoning_effort` and the like. The front door checks them and leaves out
 * what the gateway itself handles (`model`, `messages`, `stream`).
 */
export type CompletionParams = Readonly<Record<string, unknown>>;

/**
 * Which API made a job: `POST /chat`, `/v1/chat/completions`, `/v1/responses`,
 * `/v1/messages` or `/v1/embeddings`. Counted apart in `/metrics` and usage.
 */
export type JobApi = "chat" | "chat.completions" | "responses" | "messages" | "embeddings";

/**
 * What a job made by `POST /v1/responses` keeps of its request, to answer for
 * it as a response object later (see lib/http/responses_routes.ts).
 */
export interface ResponseRecord {
  /**
   * Whether the response is kept: readable with `GET /v1/responses/{id}` and
   * continued with `previous_response_id`. False: it reads as missing.
   */
  store: boolean;
  /** The response it continues, as the client named it (`resp_<job_id>`). */
  previous_response_id?: string;
  /**
   * Set when `context` begins with the request's `instructions`, as a system
   * message: the next response of a chain does not inherit them.
   */
  instructions?: true;
  /** The client's `metadata`, echoed in the response object. */
  metadata?: Record<string, string>;
}
/** Every API, in the order `/metrics` lists them. */
export const JOB_APIS: readonly JobApi[] = [
  "chat",
  "chat.completions",
  "responses",
  "messages",
  "embeddings",
];

/**
 * What the front door counted for a job against its key's limits (see
 * lib/http/key_limits.ts), for the worker to settle.
 */
export interface JobLimits {
  /** The key's in-flight limit: the worker runs no more of the key's jobs at once. */
  in_flight?: number;
  /** The job's member of its key's set of waiting jobs, taken out when the job first starts. */
  waiting?: string;
  /** Tokens counted for the job when it was sent; its usage takes their place when it ends. */
  tokens?: number;
  /** The length (s) of the windows its tokens are counted in. */
  window_s?: number;
}

/** How urgently a job should run. */
export type Priority = "high" | "normal";

/** The stored record of one chat job. */
export interface Job {
  job_id: string;
  conversation_id: string;
  status: JobStatus;
  /** The backend's route name, e.g. "vllm". */
  route: string;
  model: string;
  priority: Priority;
  user_message: ChatMessage;
  /** Deliveries so far. */
  attempts: number;
  created_at: string;
  updated_at: string;
  started_at?: string;
  finished_at?: string;
  /** The assistant's answer, once succeeded: its text. */
  reply?: string;
  /**
   * The reply message, when it holds more than text (tool calls, reasoning);
   * without its content when that is `reply` (see `replyMessage`).
   */
  reply_message?: StoredReplyMessage;
  /** Why the reply ended: "stop", "length", "tool_calls", … */
  finish_reason?: string;
  /**
   * Set only inside the embedded store: the reply was too long for the
   * record's KV value and is kept beside it in this many chunks.
   */
  reply_chunks?: number;
  /** The reply's token counts: the backend's, or counted by the gateway when it gave none. */
  usage?: Usage;
  /** An embeddings job's vectors, once succeeded (its `reply` is empty). */
  embeddings?: StoredEmbeddings;
  /** Why the last attempt failed; on a failed job, why it was given up. */
  error?: string;
  /** Epoch seconds after which the store may delete the record (DynamoDB TTL). */
  expires_at: number;
  /** Epoch ms until which a running worker holds the job; absent when nobody does. */
  lease_until?: number;
  /** Who created the job: a digest of the API key, never the key. Absent without keys. */
  owner?: string;
  /**
   * How the job uses history. "conversation" (the default): the stored
   * history, then `user_message`, and the exchange is appended to it.
   * "synced": the client sent the whole chat (`context`, then
   * `user_message`), and the stored conversation becomes what it sent plus
   * the reply. "stateless": `context` and `user_message`, nothing stored.
   */
  mode?: "conversation" | "synced" | "stateless";
  /**
   * Messages before `user_message`: the client's whole chat ("synced",
   * "stateless"), or its system messages, sent before the stored history.
   */
  context?: ChatMessage[];
  /** `context` in the blob store, when it is too long to keep in the record (see lib/http/payloads.ts). */
  context_ref?: string;
  params?: CompletionParams;
  /** `params` in the blob store, when they are too long to keep in the record. */
  params_ref?: string;
  /** Whether the worker streams the reply into `partial` as the backend produces it. */
  stream?: boolean;
  /** The reply so far, while a streamed job runs. */
  partial?: string;
  /** The reasoning so far, while a streamed job runs. */
  partial_reasoning?: string;
  /** Where the finished job is POSTed. */
  callback_url?: string;
  /** Which API made it; absent on jobs made before the field (`chat` or `chat.completions`). */
  api?: JobApi;
  /** Set on a job made by `POST /v1/responses`. */
  response?: ResponseRecord;
  /** What its key's limits counted for it; absent for a key without limits. */
  limits?: JobLimits;
  /** How many times an operator sent the failed job back to run (see lib/core/retry.ts). */
  retries?: number;
  /** When the job was last sent back to run. */
  retried_at?: string;
  /**
   * How many times the job's messages were made out of date: by a retry, or
   * by an older job retried ahead of it in its line. Its tickets carry it,
   * and a ticket of an older generation starts nothing. Absent for 0.
   */
  generation?: number;
  /**
   * When a message of the job's current generation went to the queue; absent
   * until then, and cleared when its generation moves on. A job that has it
   * is never sent again by a line check or a hand-over (see lib/core/turns.ts).
   */
  sent_at?: string;
}

/** What travels on the queue: enough to find the job record and its backend. */
export interface JobTicket {
  job_id: string;
  conversation_id: string;
  /** The backend's route name, so the worker knows whose model places the job needs before reading it. */
  route: string;
  /** Set for a stateless job: no history to read, no line to hand on. */
  stateless?: true;
  /**
   * Set on a delayed message that looks at the conversation's line later
   * (see lib/turns.ts), in case the job at its head was never enqueued.
   */
  line_check?: true;
  /** The job's `generation` when this ticket was sent; absent for 0. */
  generation?: number;
  /**
   * The job's owner id (never the key): the queues and the worker share their
   * places fairly between owners. Absent without API keys.
   */
  owner?: string;
  /** The owner's in-flight limit, so the worker knows it before it claims the job. */
  in_flight?: number;
  /**
   * Deliveries of this job's message before it was put back unrun and sent
   * again (see `JobQueue.defer`): the queue adds them to its receive count.
   */
  prior_deliveries?: number;
  /**
   * Set on a redriven dead letter whose job could not be retried, as it goes
   * back to the dead-letter queue: when that redrive was asked for (ISO). The
   * same redrive, still copying, then leaves it there instead of sending it
   * round again in place of a dead letter it has not reached yet.
   */
  refused_redrive?: string;
}

/** Options for {@linkcode newJob}. */
export interface NewJobOptions {
  conversationId: string;
  route: string;
  model: string;
  priority: Priority;
  userMessage: ChatMessage;
  /** Optional fields of the job record, copied as they are. */
  recordFields?: Pick<
    Job,
    | "owner"
    | "mode"
    | "context"
    | "context_ref"
    | "params"
    | "params_ref"
    | "stream"
    | "callback_url"
    | "api"
    | "response"
    | "limits"
  >;
  ttlDays: number;
  now?: Date;
}

/** A fresh queued job with a random id. */
export function newJob(options: NewJobOptions): Job {
  const now = options.now ?? new Date();
  const iso = now.toISOString();
  return {
    job_id: crypto.randomUUID(),
    conversation_id: options.conversationId,
    status: "queued",
    route: options.route,
    model: options.model,
    priority: options.priority,
    user_message: options.userMessage,
    attempts: 0,
    created_at: iso,
    updated_at: iso,
    expires_at: Math.floor(now.getTime() / 1000) + options.ttlDays * 86_400,
    ...options.recordFields,
  };
}

/** The ticket that goes on the queue for a job. */
export function ticketFor(job: Job): JobTicket {
  const ticket: JobTicket = {
    job_id: job.job_id,
    conversation_id: job.conversation_id,
    route: job.route,
  };
  if (isStateless(job)) ticket.stateless = true;
  if (job.generation) ticket.generation = job.generation;
  if (job.owner) ticket.owner = job.owner;
  if (job.limits?.in_flight) ticket.in_flight = job.limits.in_flight;
  return ticket;
}

/** Whether a job keeps no conversation history. */
export function isStateless(job: Job): boolean {
  return job.mode === "stateless";
}
