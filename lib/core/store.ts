/** What the gateway needs from storage, whichever store backs it. */
import type { WorkerRecord } from "./catalogue.ts";
import type { StoredEmbeddings } from "./embeddings.ts";
import type { ReplySoFar } from "./job_changes.ts";
import type { ChatMessage, Usage } from "./messages.ts";
import type { Job } from "./jobs.ts";
import type { JobPage, ListJobsOptions } from "./job_list.ts";

/** A conversation as stored: its messages in order. */
export interface Conversation {
  conversation_id: string;
  messages: ChatMessage[];
  updated_at: string;
  /** `created_at` of the newest job whose exchange it holds; absent on conversations older than it. */
  latest_job_at?: string;
}

/** What a job's success records. */
export interface JobResult {
  /** The assistant's message: its text, and its tool calls and reasoning when it has them. */
  reply: ChatMessage;
  /** Why the reply ended: "stop", "length", "tool_calls", … */
  finishReason: string;
  usage: Usage;
  /** An embeddings job's vectors (its `reply` is empty). */
  embeddings?: StoredEmbeddings;
  /**
   * For a synced job: the conversation as it now stands (what the client sent
   * plus the reply, trimmed to fit), which replaces what is stored.
   */
  conversation?: ChatMessage[];
}

/** The result of finishing a job. */
export type CompleteResult = "completed" | "already_completed";

/** What happened when a worker tried to claim a job. */
export type StartResult =
  | { state: "started"; job: Job }
  /** Succeeded or failed already: a duplicate or late delivery. */
  | { state: "finished"; job: Job }
  /** Another run holds the job's lease until `leaseUntil` (epoch ms). */
  | { state: "busy"; leaseUntil: number }
  /** The job was sent back to run after this message was sent: the message is out of date. */
  | { state: "stale"; job: Job };

/**
 * An idempotency key as the store keeps it (see lib/http/idempotency.ts):
 * claimed by the job its first request made, in the same step as writing it.
 */
export interface IdempotencyClaim {
  /** The key scoped to its API key, as a digest: the same for every repeat. */
  id: string;
  /** A digest of the request, so that a repeat with another body is told apart. */
  fingerprint: string;
  /** Epoch seconds after which the key no longer holds. */
  expiresAt: number;
  /** What the first answer says that the job record does not (`POST /chat`'s `history_messages`). */
  answer?: Readonly<Record<string, unknown>>;
}

/** Options for {@linkcode Store.createJob}. */
export interface CreateOptions {
  /** The request's idempotency key: the job is written only if no live job holds it. */
  idempotency?: IdempotencyClaim;
}

/** A live idempotency key: the job its first request made, and that request's digest. */
export interface HeldIdempotencyKey {
  jobId: string;
  fingerprint: string;
  answer?: Readonly<Record<string, unknown>>;
}

/** What {@linkcode Store.createJob} did. */
export type CreateResult =
  /** Written and put in its line; `first`: at the head, to be sent now. */
  | { state: "created"; first: boolean }
  /** Nothing written: an earlier request's job holds the idempotency key. */
  | ({ state: "repeated" } & HeldIdempotencyKey);

/** Options for {@linkcode Store.startJob}. */
export interface StartOptions {
  /** The ticket's `generation`: a job whose generation moved on is not started by it. */
  generation?: number;
}

/** How a failed job goes back into its conversation's line (see lib/core/retry.ts). */
export interface RequeuePlan {
  /** The line as the caller read it; it must still be exactly this. */
  line: readonly string[];
  /** Where in the line the job goes. */
  position: number;
  /**
   * The jobs from that position on: not started, they wait behind the job
   * now, and their messages already sent go out of date. Each must still be
   * queued, unstarted and of this generation.
   */
  displaced: readonly { job_id: string; generation: number }[];
}

/**
 * Conversations, job records, and each conversation's line of unfinished
 * jobs: a conversation runs one job at a time, in the order they were sent.
 */
export interface Store {
  /** The conversation's messages, or undefined before its first exchange. */
  getConversation(conversationId: string): Promise<Conversation | undefined>;
  /**
   * Writes a queued job and puts it at the end of its conversation's line
   * (a stateless job has no line, and is always first).
   * `first` says it is at the head of the line and should be enqueued now;
   * otherwise the job before it hands over the turn when it finishes. With
   * an idempotency key already held by a live job, writes nothing and names
   * that job.
   */
  createJob(job: Job, options?: CreateOptions): Promise<CreateResult>;
  /**
   * Puts a queued job at the end of its conversation's line unless it is in
   * it already, and says whether it is at the head: for a repeated request
   * whose front door stopped between writing the job and lining it up.
   */
  joinLine(job: Job): Promise<{ first: boolean }>;
  /**
   * Records that a message of the job's `generation` went to the queue
   * (`sent_at`), unless its generation has moved on meanwhile.
   */
  markSent(jobId: string, generation: number): Promise<void>;
  /** The job that holds a live idempotency key, or undefined when none does. */
  findIdempotencyKey(id: string): Promise<HeldIdempotencyKey | undefined>;
  /**
   * Frees an idempotency key that `jobId` holds, so that a retry of a request
   * whose job could not be queued makes a new job.
   */
  releaseIdempotencyKey(id: string, jobId: string): Promise<void>;
  getJob(jobId: string): Promise<Job | undefined>;
  /**
   * Claims a job for a run: marks it running, counts the attempt and holds a
   * lease on it for `leaseMs`. Throws {@linkcode JobNotFoundError} when there
   * is no such record. A delivery that never starts the job (handed back
   * unrun, or a duplicate) is not an attempt.
   */
  startJob(jobId: string, leaseMs: number, options?: StartOptions): Promise<StartResult>;
  /** Extends the lease of a running job. */
  renewLease(jobId: string, leaseMs: number): Promise<void>;
  /** Puts a job back to `queued` with the reason its attempt failed, releasing its lease. */
  retryJob(jobId: string, error: string): Promise<void>;
  /** Gives a job up for good with its reason. Never undoes a success. */
  failJob(jobId: string, error: string): Promise<void>;
  /**
   * Appends the job's user message and the assistant's reply to the
   * conversation and marks the job succeeded, as one atomic step that happens
   * at most once per job. A stateless job is only marked succeeded.
   */
  completeJob(job: Job, result: JobResult): Promise<CompleteResult>;
  /**
   * Removes `jobId` from the head of its conversation's line, if it is there,
   * and returns the job now at the head (undefined when the line is empty).
   */
  passTurn(conversationId: string, jobId: string): Promise<string | undefined>;
  /** The job at the head of a conversation's line. */
  headOfLine(conversationId: string): Promise<string | undefined>;
  /** Cancels a job that is queued, not running; returns it canceled, or undefined when it could not be. */
  cancelJob(jobId: string): Promise<Job | undefined>;
  /**
   * Deletes a finished job's record and what is kept beside it (a long
   * reply's pieces, a reply so far), for a client that asks for it gone.
   * Returns whether it deleted one: an unfinished job is left alone, since a
   * worker still needs it. Blobs are shared by content and expire on their own.
   */
  deleteJob(jobId: string): Promise<boolean>;
  /**
   * Records the reply so far of a running, streamed job, for the requests
   * that follow it with {@linkcode Store.watchJob}.
   */
  savePartial(jobId: string, soFar: ReplySoFar): Promise<void>;
  /**
   * How often a streamed reply so far is worth recording, at most (ms): 0 for
   * every piece, when it only travels in-process; more when each write costs.
   */
  readonly partialEveryMs: number;
  /**
   * Follows a job: yields its record now, then each newer state as the store
   * learns of it (intermediate states may be skipped), with a running streamed
   * job's reply so far in `partial`. Yields undefined and ends when there is no
   * such job; ends when `signal` aborts. Waiting requests use it instead of
   * reading the record in a loop of their own.
   */
  watchJob(jobId: string, signal: AbortSignal): AsyncIterable<Job | undefined>;
  /**
   * Writes a worker's heartbeat record, replacing its previous one: the
   * catalogue of what it serves, under its id.
   */
  saveWorker(record: WorkerRecord): Promise<void>;
  /**
   * Every worker record written in the last day, live or not, in one cheap
   * read (the front door reads it for each message it routes).
   */
  listWorkers(): Promise<WorkerRecord[]>;
  /** An owner's jobs (undefined: those made without API keys), newest first, a page at a time. */
  listJobs(owner: string | undefined, options: ListJobsOptions): Promise<JobPage>;
  /** The ids in a conversation's line of unfinished jobs, head first. */
  lineOf(conversationId: string): Promise<string[]>;
  /**
   * Sends a failed job back to run, in one step: `queued`, its attempts and
   * `sent_at` cleared, its `retries` and `generation` counted, and (unless stateless)
   * put in its conversation's line as `plan` says, the generation of each
   * displaced job counted too (and its `sent_at` cleared). Only if the job is still failed and the plan
   * still holds; returns the job, or undefined when something changed.
   */
  requeueFailedJob(job: Job, plan: RequeuePlan): Promise<Job | undefined>;
  /** Records that an operator asked to redrive the dead letters now; returns when. */
  requestRedrive(): Promise<Date>;
  /** When an operator last asked to redrive the dead letters. */
  lastRedriveRequest(): Promise<Date | undefined>;
}

/** Thrown when a job record that should exist does not. */
export class JobNotFoundError extends Error {
  constructor(jobId: string) {
    super(`Cannot find job: no record for job "${jobId}"`);
    this.name = "JobNotFoundError";
  }
}

/** A record over its store's size limit (DynamoDB's 400 KB item): trying again cannot help. */
export class RecordTooLargeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RecordTooLargeError";
  }
}

/** Whether a job has reached an end state. */
export function isFinished(job: Job): boolean {
  return job.status === "succeeded" || job.status === "failed" || job.status === "canceled";
}
