/** The store in a local Deno KV file: conversations and job records that survive a restart. */
import { isKept, WORKER_RECORD_KEEP_MS, type WorkerRecord } from "../../core/catalogue.ts";
import { followJob, JobChanges, type ReplySoFar } from "../../core/job_changes.ts";
import { isStateless, type Job, type JobStatus } from "../../core/jobs.ts";
import { type ChatMessage, replyText, richReply } from "../../core/messages.ts";
import {
  type CompleteResult,
  type Conversation,
  isFinished,
  JobNotFoundError,
  type JobResult,
  type StartResult,
  type Store,
} from "../../core/store.ts";

/**
 * A conversation's header: how many messages it has and its line of
 * unfinished jobs. Its messages are kept as JSON cut into `chunks` pieces
 * (`["conversation_chunk", id, n]`, bytes), since one KV value holds at most
 * 64 KiB and a single message may hold more. A conversation written before
 * chunks has no `chunks` and a message per entry (`["message", id, n]`); it
 * is rewritten in chunks the next time it changes.
 */
interface ConversationHead {
  conversation_id: string;
  updated_at?: string;
  count: number;
  pending: string[];
  chunks?: number;
}

const conversationKey = (id: string) => ["conversation", id];
const messagesPrefix = (id: string) => ["message", id];
const chunkKey = (id: string, n: number) => ["conversation_chunk", id, n];
/** The most bytes of a conversation's JSON one KV value holds here. */
const CHUNK_BYTES = 60_000;
const jobKey = (id: string) => ["job", id];
const workerKey = (id: string) => ["worker", id];

/**
 * How often a waiting request reads its job anyway: every change this store
 * makes is told at once, in-process; this only catches a write by another
 * process on the same file.
 */
const RECHECK_MS = 1000;

/** Keeps a job record only until its `expires_at`, like DynamoDB's TTL. */
function expiry(job: Job): { expireIn: number } {
  return { expireIn: Math.max(1000, job.expires_at * 1000 - Date.now()) };
}

function emptyHead(conversationId: string): ConversationHead {
  return { conversation_id: conversationId, count: 0, pending: [] };
}

/**
 * A {@linkcode Store} on Deno KV; every change is one atomic, version-checked
 * commit, told at once to the requests that follow the job. A streamed reply
 * so far is only told, never written: the worker runs in this process.
 */
export class KvStore implements Store {
  readonly partialEveryMs = 0;
  #kv: Deno.Kv;
  #changes = new JobChanges();

  constructor(kv: Deno.Kv) {
    this.#kv = kv;
  }

  async getConversation(conversationId: string): Promise<Conversation | undefined> {
    const head = await this.#kv.get<ConversationHead>(conversationKey(conversationId));
    if (!head.value?.updated_at) return undefined;
    const messages = await this.#messagesOf(head.value);
    return { conversation_id: conversationId, messages, updated_at: head.value.updated_at };
  }

  /** A conversation's messages, from its chunks or, written before chunks, its entries. */
  async #messagesOf(head: ConversationHead): Promise<ChatMessage[]> {
    const id = head.conversation_id;
    if (head.chunks === undefined) {
      return await Array.fromAsync(
        this.#kv.list<ChatMessage>({ prefix: messagesPrefix(id) }),
        (entry) => entry.value,
      );
    }
    const pieces: Uint8Array[] = [];
    for (let n = 0; n < head.chunks; n++) {
      const chunk = await this.#kv.get<Uint8Array>(chunkKey(id, n));
      if (!chunk.value) throw new Error(`Cannot read conversation "${id}": chunk ${n} is missing`);
      pieces.push(chunk.value);
    }
    return head.chunks === 0 ? [] : JSON.parse(new TextDecoder().decode(concat(pieces)));
  }

  /**
   * Adds to `atomic` the writes that make a conversation hold `messages`, in
   * chunks, and returns its new header (for the caller to set, with its own
   * changes). Old chunks past the new end, and entries of the layout before
   * chunks, are deleted.
   */
  #writeMessages(
    atomic: Deno.AtomicOperation,
    head: ConversationHead,
    messages: readonly ChatMessage[],
  ): ConversationHead {
    const id = head.conversation_id;
    const bytes = new TextEncoder().encode(JSON.stringify(messages));
    const chunks = Math.ceil(bytes.length / CHUNK_BYTES);
    for (let n = 0; n < chunks; n++) {
      atomic.set(chunkKey(id, n), bytes.subarray(n * CHUNK_BYTES, (n + 1) * CHUNK_BYTES));
    }
    for (let n = chunks; n < (head.chunks ?? 0); n++) atomic.delete(chunkKey(id, n));
    if (head.chunks === undefined) {
      for (let n = 0; n < head.count; n++) atomic.delete([...messagesPrefix(id), n]);
    }
    return { ...head, count: messages.length, chunks };
  }

  async createJob(job: Job): Promise<{ first: boolean }> {
    if (isStateless(job)) {
      const result = await this.#kv.atomic().check({ key: jobKey(job.job_id), versionstamp: null })
        .set(jobKey(job.job_id), job, expiry(job)).commit();
      if (!result.ok) throw new Error(`Cannot create job: job "${job.job_id}" already exists`);
      this.#changed(job);
      return { first: true };
    }
    while (true) {
      const head = await this.#kv.get<ConversationHead>(conversationKey(job.conversation_id));
      const current = head.value ?? emptyHead(job.conversation_id);
      const result = await this.#kv.atomic()
        .check({ key: jobKey(job.job_id), versionstamp: null }, head)
        .set(jobKey(job.job_id), job, expiry(job))
        .set(head.key, { ...current, pending: [...current.pending, job.job_id] })
        .commit();
      if (result.ok) {
        this.#changed(job);
        return { first: current.pending.length === 0 };
      }
      if ((await this.#kv.get(jobKey(job.job_id))).value) {
        throw new Error(`Cannot create job: job "${job.job_id}" already exists`);
      }
    }
  }

  async getJob(jobId: string): Promise<Job | undefined> {
    return (await this.#kv.get<Job>(jobKey(jobId))).value ?? undefined;
  }

  async startJob(jobId: string, leaseMs: number): Promise<StartResult> {
    while (true) {
      const now = Date.now();
      const entry = await this.#kv.get<Job>(jobKey(jobId));
      if (!entry.value) throw new JobNotFoundError(jobId);
      if (isFinished(entry.value)) return { state: "finished", job: entry.value };
      if ((entry.value.lease_until ?? 0) >= now) {
        return { state: "busy", leaseUntil: entry.value.lease_until! };
      }
      const iso = new Date(now).toISOString();
      const job: Job = {
        ...entry.value,
        status: "running",
        attempts: (entry.value.attempts ?? 0) + 1,
        started_at: iso,
        updated_at: iso,
        lease_until: now + leaseMs,
      };
      if ((await this.#kv.atomic().check(entry).set(entry.key, job, expiry(job)).commit()).ok) {
        this.#changed(job);
        return { state: "started", job };
      }
    }
  }

  async renewLease(jobId: string, leaseMs: number): Promise<void> {
    await this.#update(
      jobId,
      (job) => job.status === "running" ? { ...job, lease_until: Date.now() + leaseMs } : job,
    );
  }

  async retryJob(jobId: string, error: string): Promise<void> {
    await this.#settle(jobId, "queued", error);
  }

  async failJob(jobId: string, error: string): Promise<void> {
    await this.#settle(jobId, "failed", error);
  }

  async completeJob(job: Job, result: JobResult): Promise<CompleteResult> {
    while (true) {
      const now = new Date().toISOString();
      const [current, head] = await this.#kv.getMany<[Job, ConversationHead]>([
        jobKey(job.job_id),
        conversationKey(job.conversation_id),
      ]);
      if (!current.value) throw new JobNotFoundError(job.job_id);
      if (current.value.status === "succeeded") return "already_completed";
      const conversation = head.value ?? emptyHead(job.conversation_id);
      const {
        error: _error,
        lease_until: _lease,
        partial: _partial,
        partial_reasoning: _reasoning,
        ...rest
      } = current.value;
      const { reply_message: _message, ...previous } = rest;
      const message = richReply(result.reply);
      const done: Job = {
        ...previous,
        status: "succeeded",
        reply: replyText(result.reply),
        ...(message ? { reply_message: message } : {}),
        finish_reason: result.finishReason,
        usage: result.usage,
        finished_at: now,
        updated_at: now,
      };
      if (isStateless(job)) {
        const ok =
          (await this.#kv.atomic().check(current).set(current.key, done, expiry(done)).commit()).ok;
        if (!ok) continue;
        this.#changed(done);
        return "completed";
      }
      // The header's version check covers the chunks: every write of them changes it.
      const messages = result.conversation ??
        [...await this.#messagesOf(conversation), job.user_message, result.reply];
      const atomic = this.#kv.atomic().check(current, head);
      const written = this.#writeMessages(atomic, conversation, messages);
      const commit = await atomic
        .set(head.key, { ...written, updated_at: now })
        .set(current.key, done, expiry(done))
        .commit();
      if (commit.ok) {
        this.#changed(done);
        return "completed";
      }
    }
  }

  async cancelJob(jobId: string): Promise<Job | undefined> {
    let canceled: Job | undefined;
    await this.#update(jobId, (job) => {
      canceled = undefined; // a retried commit decides again
      if (job.status !== "queued") return job;
      const now = new Date().toISOString();
      return canceled = { ...job, status: "canceled", finished_at: now, updated_at: now };
    });
    return canceled;
  }

  savePartial(jobId: string, soFar: ReplySoFar): Promise<void> {
    this.#changes.publish(jobId, { partial: soFar });
    return Promise.resolve();
  }

  watchJob(jobId: string, signal: AbortSignal): AsyncIterable<Job | undefined> {
    return followJob(this.#changes, jobId, signal, {
      read: () => this.getJob(jobId),
      recheckMs: RECHECK_MS,
    });
  }

  async passTurn(conversationId: string, jobId: string): Promise<string | undefined> {
    while (true) {
      const head = await this.#kv.get<ConversationHead>(conversationKey(conversationId));
      if (!head.value || head.value.pending[0] !== jobId) return head.value?.pending[0];
      const pending = head.value.pending.slice(1);
      if (
        (await this.#kv.atomic().check(head).set(head.key, { ...head.value, pending }).commit()).ok
      ) {
        return pending[0];
      }
    }
  }

  async headOfLine(conversationId: string): Promise<string | undefined> {
    return (await this.#kv.get<ConversationHead>(conversationKey(conversationId))).value
      ?.pending[0];
  }

  async saveWorker(record: WorkerRecord): Promise<void> {
    const expireIn = Math.max(
      1000,
      Date.parse(record.seen_at) + WORKER_RECORD_KEEP_MS - Date.now(),
    );
    await this.#kv.set(workerKey(record.worker_id), record, { expireIn });
  }

  async listWorkers(): Promise<WorkerRecord[]> {
    const records: WorkerRecord[] = [];
    for await (const entry of this.#kv.list<WorkerRecord>({ prefix: ["worker"] })) {
      // Deno KV deletes expired keys lazily; an entry of an older layout has no backends.
      if (Array.isArray(entry.value?.backends) && isKept(entry.value)) records.push(entry.value);
    }
    return records;
  }

  async #settle(jobId: string, status: JobStatus, error: string): Promise<void> {
    await this.#update(jobId, (job) => {
      // Never undo a success that another delivery recorded, nor a cancellation.
      if (job.status === "succeeded" || job.status === "canceled") return job;
      const now = new Date().toISOString();
      const { lease_until: _lease, ...rest } = job;
      return {
        ...rest,
        status,
        error,
        updated_at: now,
        ...(status === "failed" ? { finished_at: now } : {}),
      };
    });
  }

  /** Applies a change to a job record with a version check, retrying on conflict. */
  async #update(jobId: string, change: (job: Job) => Job): Promise<void> {
    while (true) {
      const entry = await this.#kv.get<Job>(jobKey(jobId));
      if (!entry.value) return;
      const next = change(entry.value);
      if (next === entry.value) return;
      if ((await this.#kv.atomic().check(entry).set(entry.key, next, expiry(next)).commit()).ok) {
        this.#changed(next);
        return;
      }
    }
  }

  #changed(job: Job): void {
    this.#changes.publish(job.job_id, { job });
  }
}

function concat(pieces: readonly Uint8Array[]): Uint8Array {
  const whole = new Uint8Array(pieces.reduce((sum, p) => sum + p.length, 0));
  let offset = 0;
  for (const piece of pieces) {
    whole.set(piece, offset);
    offset += piece.length;
  }
  return whole;
}
