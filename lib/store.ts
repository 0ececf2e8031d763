/** What the gateway needs from storage, whichever store backs it. */
import type { ChatMessage } from "./messages.ts";
import type { Job } from "./jobs.ts";

/** A conversation as stored: its messages in order. */
export interface Conversation {
  conversation_id: string;
  messages: ChatMessage[];
  updated_at: string;
}

/** The result of finishing a job. */
export type CompleteResult = "completed" | "already_completed";

/** Conversations and job records. */
export interface Store {
  getConversation(conversationId: string): Promise<Conversation | undefined>;
  createJob(job: Job): Promise<void>;
  getJob(jobId: string): Promise<Job | undefined>;
  /**
   * Marks a job running for its `attempt`-th delivery and returns it, or
   * returns undefined when the job already succeeded (a duplicate delivery).
   * Throws {@linkcode JobNotFoundError} when there is no such record.
   */
  startJob(jobId: string, attempt: number): Promise<Job | undefined>;
  /** Puts a job back to `queued` with the reason its attempt failed. */
  retryJob(jobId: string, error: string): Promise<void>;
  /** Gives a job up for good with its reason. */
  failJob(jobId: string, error: string): Promise<void>;
  /**
   * Appends the job's user message and the assistant's reply to the
   * conversation and marks the job succeeded, as one atomic step that happens
   * at most once per job.
   */
  completeJob(job: Job, reply: ChatMessage): Promise<CompleteResult>;
}

/** Thrown when a job record that should exist does not. */
export class JobNotFoundError extends Error {
  constructor(jobId: string) {
    super(`Cannot find job: no record for job "${jobId}"`);
    this.name = "JobNotFoundError";
  }
}
