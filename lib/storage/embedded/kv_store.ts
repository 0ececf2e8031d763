/** The store in a local Deno KV file: conversations and job records that survive a restart. */
import { followJob, JobChanges } from "../../core/job_changes.ts";
import { isStateless, type Job, type JobStatus } from "../../core/jobs.ts";
import { type ChatMessage, replyText } from "../../core/messages.ts";
import {
  type CompleteResult,
  type Conversation,
  isFinished,
  JobNotFoundError,
  type StartResult,
  type Store,
} from "../../core/store.ts";

/**
 * A conversation's header: how many messages it has and its line of
 * unfinished jobs. Its messages are separate entries (`["message", id, n]`),
 * since one KV value holds at most 64 KiB.
 */
interface ConversationHead {
  conversation_id: string;
  updated_at?: string;
  count: number;
  pending: string[];
}

const conversationKey = (id: string) => ["conversation", id];
const messagesPrefix = (id: string) => ["message", id];
const jobKey = (id: string) => ["job", id];
const WORKER_SEEN_KEY = ["worker", "seen"];

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
    const messages: ChatMessage[] = [];
    for await (
      const entry of this.#kv.list<ChatMessage>({ prefix: messagesPrefix(conversationId) })
    ) {
      messages.push(entry.value);
    }
    return { conversation_id: conversationId, messages, updated_at: head.value.updated_at };
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

  async completeJob(job: Job, reply: ChatMessage): Promise<CompleteResult> {
    while (true) {
      const now = new Date().toISOString();
      const [current, head] = await this.#kv.getMany<[Job, ConversationHead]>([
        jobKey(job.job_id),
        conversationKey(job.conversation_id),
      ]);
      if (!current.value) throw new JobNotFoundError(job.job_id);
      if (current.value.status === "succeeded") return "already_completed";
      const conversation = head.value ?? emptyHead(job.conversation_id);
      const { error: _error, lease_until: _lease, partial: _partial, ...rest } = current.value;
      const done: Job = {
        ...rest,
        status: "succeeded",
        reply: replyText(reply),
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
      const count = conversation.count;
      const result = await this.#kv.atomic()
        .check(current, head)
        .set(head.key, { ...conversation, updated_at: now, count: count + 2 })
        .set([...messagesPrefix(job.conversation_id), count], job.user_message)
        .set([...messagesPrefix(job.conversation_id), count + 1], reply)
        .set(current.key, done, expiry(done))
        .commit();
      if (result.ok) {
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

  savePartial(jobId: string, text: string): Promise<void> {
    this.#changes.publish(jobId, { partial: text });
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

  async markWorkerSeen(workerId: string): Promise<void> {
    await this.#kv.set(WORKER_SEEN_KEY, { worker_id: workerId, seen_at: new Date().toISOString() });
  }

  async lastWorkerSeen(): Promise<Date | undefined> {
    const seen = (await this.#kv.get<{ seen_at: string }>(WORKER_SEEN_KEY)).value;
    return seen ? new Date(seen.seen_at) : undefined;
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
