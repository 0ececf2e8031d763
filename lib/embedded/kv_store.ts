/** The store in a local Deno KV file: conversations and job records that survive a restart. */
import type { Job, JobStatus } from "../jobs.ts";
import type { ChatMessage } from "../messages.ts";
import { type CompleteResult, type Conversation, JobNotFoundError, type Store } from "../store.ts";

/**
 * A conversation's header. Its messages are separate entries
 * (`["message", id, n]`), since one KV value holds at most 64 KiB.
 */
interface ConversationHead {
  conversation_id: string;
  updated_at: string;
  count: number;
}

const conversationKey = (id: string) => ["conversation", id];
const messagesPrefix = (id: string) => ["message", id];
const jobKey = (id: string) => ["job", id];

/** Keeps a job record only until its `expires_at`, like DynamoDB's TTL. */
function expiry(job: Job): { expireIn: number } {
  return { expireIn: Math.max(1000, job.expires_at * 1000 - Date.now()) };
}

/** A {@linkcode Store} on Deno KV; every change is one atomic, version-checked commit. */
export class KvStore implements Store {
  #kv: Deno.Kv;

  constructor(kv: Deno.Kv) {
    this.#kv = kv;
  }

  async getConversation(conversationId: string): Promise<Conversation | undefined> {
    const head = await this.#kv.get<ConversationHead>(conversationKey(conversationId));
    if (!head.value) return undefined;
    const messages: ChatMessage[] = [];
    for await (
      const entry of this.#kv.list<ChatMessage>({ prefix: messagesPrefix(conversationId) })
    ) {
      messages.push(entry.value);
    }
    return { conversation_id: conversationId, messages, updated_at: head.value.updated_at };
  }

  async createJob(job: Job): Promise<void> {
    const result = await this.#kv.atomic().check({ key: jobKey(job.job_id), versionstamp: null })
      .set(jobKey(job.job_id), job, expiry(job)).commit();
    if (!result.ok) throw new Error(`Cannot create job: job "${job.job_id}" already exists`);
  }

  async getJob(jobId: string): Promise<Job | undefined> {
    return (await this.#kv.get<Job>(jobKey(jobId))).value ?? undefined;
  }

  async startJob(jobId: string, attempt: number): Promise<Job | undefined> {
    const now = new Date().toISOString();
    while (true) {
      const entry = await this.#kv.get<Job>(jobKey(jobId));
      if (!entry.value) throw new JobNotFoundError(jobId);
      if (entry.value.status === "succeeded") return undefined;
      const job: Job = {
        ...entry.value,
        status: "running",
        attempts: attempt,
        started_at: now,
        updated_at: now,
      };
      if ((await this.#kv.atomic().check(entry).set(entry.key, job, expiry(job)).commit()).ok) {
        return job;
      }
    }
  }

  async retryJob(jobId: string, error: string): Promise<void> {
    await this.#finish(jobId, "queued", error);
  }

  async failJob(jobId: string, error: string): Promise<void> {
    await this.#finish(jobId, "failed", error);
  }

  async completeJob(job: Job, reply: ChatMessage): Promise<CompleteResult> {
    while (true) {
      const now = new Date().toISOString();
      const [current, head] = await this.#kv.getMany<[Job, ConversationHead]>([
        jobKey(job.job_id),
        conversationKey(job.conversation_id),
      ]);
      if (!current.value) throw new JobNotFoundError(job.job_id);
      if (current.value.status === "succeeded") return "already_completed";
      const count = head.value?.count ?? 0;
      const { error: _dropped, ...rest } = current.value;
      const done: Job = {
        ...rest,
        status: "succeeded",
        reply: typeof reply.content === "string" ? reply.content : JSON.stringify(reply.content),
        finished_at: now,
        updated_at: now,
      };
      const result = await this.#kv.atomic()
        .check(current, head)
        .set(head.key, { conversation_id: job.conversation_id, updated_at: now, count: count + 2 })
        .set([...messagesPrefix(job.conversation_id), count], job.user_message)
        .set([...messagesPrefix(job.conversation_id), count + 1], reply)
        .set(current.key, done, expiry(done))
        .commit();
      if (result.ok) return "completed";
    }
  }

  async #finish(jobId: string, status: JobStatus, error: string): Promise<void> {
    while (true) {
      const now = new Date().toISOString();
      const entry = await this.#kv.get<Job>(jobKey(jobId));
      // Never undo a success that another delivery of the same job recorded.
      if (!entry.value || entry.value.status === "succeeded") return;
      const job: Job = {
        ...entry.value,
        status,
        error,
        updated_at: now,
        ...(status === "failed" ? { finished_at: now } : {}),
      };
      if ((await this.#kv.atomic().check(entry).set(entry.key, job, expiry(job)).commit()).ok) {
        return;
      }
    }
  }
}
