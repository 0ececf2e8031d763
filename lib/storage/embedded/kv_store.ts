/** The store in a local Deno KV file: conversations and job records that survive a restart. */
import { isKept, WORKER_RECORD_KEEP_MS, type WorkerRecord } from "../../core/catalogue.ts";
import { followJob, JobChanges, type ReplySoFar } from "../../core/job_changes.ts";
import { isStateless, type Job, type JobStatus } from "../../core/jobs.ts";
import type { JobPage, ListJobsOptions } from "../../core/job_list.ts";
import { replyText, richReply } from "../../core/messages.ts";
import {
  type CompleteResult,
  type Conversation,
  type CreateOptions,
  type CreateResult,
  type HeldIdempotencyKey,
  isFinished,
  JobNotFoundError,
  type JobResult,
  type RequeuePlan,
  type StartOptions,
  type StartResult,
  type Store,
} from "../../core/store.ts";
import {
  CHUNK_BYTES,
  type ConversationHead,
  conversationKey,
  emptyHead,
  readMessages,
  readPieces,
  writeMessages,
  writePieces,
} from "./kv_chunks.ts";
import { jobKey, listOwnerJobs, ownerIndexKey } from "./kv_job_list.ts";

const replyChunkKey = (id: string, n: number) => ["job_reply_chunk", id, n];
const workerKey = (id: string) => ["worker", id];
const idempotencyKey = (id: string) => ["idempotency", id];
const REDRIVE_KEY = ["redrive", "requested"];
/** A redrive request is kept as long as SQS keeps a dead letter: 14 days. */
const REDRIVE_KEEP_MS = 14 * 86_400_000;

/** An idempotency key as kept: the job that holds it, until `expires_at` (epoch s). */
interface HeldKey {
  job_id: string;
  fingerprint: string;
  expires_at: number;
  answer?: Readonly<Record<string, unknown>>;
}

/** A held key as the store's callers see it. */
function heldKey(value: HeldKey): HeldIdempotencyKey {
  return { jobId: value.job_id, fingerprint: value.fingerprint, answer: value.answer };
}

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
    const messages = await readMessages(this.#kv, head.value);
    const { updated_at, latest_job_at } = head.value;
    return {
      conversation_id: conversationId,
      messages,
      updated_at,
      ...(latest_job_at ? { latest_job_at } : {}),
    };
  }

  async createJob(job: Job, options: CreateOptions = {}): Promise<CreateResult> {
    const claim = options.idempotency;
    while (true) {
      const held = claim ? await this.#kv.get<HeldKey>(idempotencyKey(claim.id)) : undefined;
      // KV deletes an expired key lazily: one past its time no longer holds.
      if (held?.value && held.value.expires_at * 1000 > Date.now()) {
        return { state: "repeated", ...heldKey(held.value) };
      }
      const head = isStateless(job)
        ? undefined
        : await this.#kv.get<ConversationHead>(conversationKey(job.conversation_id));
      const atomic = this.#kv.atomic()
        .check({ key: jobKey(job.job_id), versionstamp: null })
        .set(jobKey(job.job_id), job, expiry(job))
        .set(ownerIndexKey(job), job.job_id, expiry(job));
      if (held && claim) {
        const value: HeldKey = {
          job_id: job.job_id,
          fingerprint: claim.fingerprint,
          expires_at: claim.expiresAt,
          answer: claim.answer,
        };
        atomic.check(held).set(held.key, value, {
          expireIn: Math.max(1000, claim.expiresAt * 1000 - Date.now()),
        });
      }
      const current = head && (head.value ?? emptyHead(job.conversation_id));
      if (head && current) {
        atomic.check(head).set(head.key, { ...current, pending: [...current.pending, job.job_id] });
      }
      if ((await atomic.commit()).ok) {
        this.#changed(job);
        return { state: "created", first: !current || current.pending.length === 0 };
      }
      if ((await this.#kv.get(jobKey(job.job_id))).value) {
        throw new Error(`Cannot create job: job "${job.job_id}" already exists`);
      }
    }
  }

  async joinLine(job: Job): Promise<{ first: boolean }> {
    if (isStateless(job)) return { first: true };
    while (true) {
      const head = await this.#kv.get<ConversationHead>(conversationKey(job.conversation_id));
      const current = head.value ?? emptyHead(job.conversation_id);
      if (current.pending.includes(job.job_id)) return { first: current.pending[0] === job.job_id };
      const pending = [...current.pending, job.job_id];
      if (
        (await this.#kv.atomic().check(head).set(head.key, { ...current, pending }).commit()).ok
      ) {
        return { first: pending.length === 1 };
      }
    }
  }

  async markSent(jobId: string, generation: number): Promise<void> {
    await this.#update(
      jobId,
      (job) =>
        (job.generation ?? 0) === generation && !isFinished(job)
          ? { ...job, sent_at: new Date().toISOString() }
          : job,
    );
  }

  async findIdempotencyKey(id: string): Promise<HeldIdempotencyKey | undefined> {
    const held = (await this.#kv.get<HeldKey>(idempotencyKey(id))).value;
    return held && held.expires_at * 1000 > Date.now() ? heldKey(held) : undefined;
  }

  async releaseIdempotencyKey(id: string, jobId: string): Promise<void> {
    const held = await this.#kv.get<HeldKey>(idempotencyKey(id));
    if (held.value?.job_id !== jobId) return;
    await this.#kv.atomic().check(held).delete(held.key).commit();
  }

  async getJob(jobId: string): Promise<Job | undefined> {
    const job = (await this.#kv.get<Job>(jobKey(jobId))).value ?? undefined;
    return job?.reply_chunks ? await this.#withReply(job) : job;
  }

  /** A succeeded job whose reply was too long for its record, with the reply read back in. */
  async #withReply(job: Job): Promise<Job> {
    const bytes = await readPieces(
      this.#kv,
      job.reply_chunks!,
      (n) => replyChunkKey(job.job_id, n),
      `job "${job.job_id}"'s reply`,
    );
    const { reply_chunks: _chunks, ...rest } = job;
    return { ...rest, ...JSON.parse(new TextDecoder().decode(bytes)) };
  }

  /**
   * Adds to `atomic` the write of a succeeded job's record. A reply too long
   * for one KV value (64 KiB) is kept beside it, in chunks that expire with it.
   */
  #writeDone(atomic: Deno.AtomicOperation, done: Job): void {
    const record = new TextEncoder().encode(JSON.stringify(done));
    if (record.length <= CHUNK_BYTES) {
      atomic.set(jobKey(done.job_id), done, expiry(done));
      return;
    }
    const { reply, reply_message, ...rest } = done;
    const chunks = writePieces(
      atomic,
      { reply, reply_message },
      (n) => replyChunkKey(done.job_id, n),
      expiry(done),
    );
    atomic.set(jobKey(done.job_id), { ...rest, reply_chunks: chunks }, expiry(done));
  }

  async startJob(jobId: string, leaseMs: number, options: StartOptions = {}): Promise<StartResult> {
    while (true) {
      const now = Date.now();
      const entry = await this.#kv.get<Job>(jobKey(jobId));
      if (!entry.value) throw new JobNotFoundError(jobId);
      if (isFinished(entry.value)) return { state: "finished", job: entry.value };
      if ((entry.value.generation ?? 0) !== (options.generation ?? 0)) {
        return { state: "stale", job: entry.value };
      }
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
        ...(result.embeddings ? { embeddings: result.embeddings } : {}),
        finished_at: now,
        updated_at: now,
      };
      if (isStateless(job)) {
        const atomic = this.#kv.atomic().check(current);
        this.#writeDone(atomic, done);
        if (!(await atomic.commit()).ok) continue;
        this.#changed(done);
        return "completed";
      }
      // The header's version check covers the chunks: every write of them changes it.
      const messages = result.conversation ??
        [...await readMessages(this.#kv, conversation), job.user_message, result.reply];
      const atomic = this.#kv.atomic().check(current, head);
      const written = writeMessages(atomic, conversation, messages);
      atomic.set(head.key, { ...written, updated_at: now, latest_job_at: job.created_at });
      this.#writeDone(atomic, done);
      const commit = await atomic.commit();
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

  async deleteJob(jobId: string): Promise<boolean> {
    while (true) {
      const entry = await this.#kv.get<Job>(jobKey(jobId));
      if (!entry.value || !isFinished(entry.value)) return false;
      const job = entry.value;
      const atomic = this.#kv.atomic().check(entry).delete(entry.key).delete(ownerIndexKey(job));
      for (let n = 0; n < (job.reply_chunks ?? 0); n++) atomic.delete(replyChunkKey(jobId, n));
      if ((await atomic.commit()).ok) {
        this.#changes.publish(jobId, { job: undefined });
        return true;
      }
    }
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

  listJobs(owner: string | undefined, options: ListJobsOptions): Promise<JobPage> {
    return listOwnerJobs(this.#kv, owner, options);
  }

  async lineOf(conversationId: string): Promise<string[]> {
    return (await this.#kv.get<ConversationHead>(conversationKey(conversationId))).value
      ?.pending ?? [];
  }

  async requeueFailedJob(job: Job, plan: RequeuePlan): Promise<Job | undefined> {
    const [current, head, ...displaced] = await this.#kv.getMany<[Job, ConversationHead, ...Job[]]>(
      [
        jobKey(job.job_id),
        conversationKey(job.conversation_id),
        ...plan.displaced.map((d) => jobKey(d.job_id)),
      ],
    );
    if (current.value?.status !== "failed") return undefined;
    const now = new Date().toISOString();
    const {
      finished_at: _f,
      started_at: _s,
      lease_until: _l,
      partial: _p,
      sent_at: _sent,
      ...rest
    } = current.value;
    const queued: Job = {
      ...rest,
      status: "queued",
      attempts: 0,
      retries: (rest.retries ?? 0) + 1,
      generation: (rest.generation ?? 0) + 1,
      retried_at: now,
      updated_at: now,
    };
    const atomic = this.#kv.atomic().check(current).set(current.key, queued, expiry(queued));
    if (!isStateless(job)) {
      const pending = head.value?.pending ?? [];
      const { line, position } = plan;
      if (pending.length !== line.length || pending.some((id, i) => id !== line[i])) {
        return undefined;
      }
      atomic.check(head).set(head.key, {
        ...(head.value ?? emptyHead(job.conversation_id)),
        pending: [...line.slice(0, position), job.job_id, ...line.slice(position)],
      });
      for (const [i, entry] of displaced.entries()) {
        const other = entry.value;
        const unstarted = other?.status === "queued" && other.attempts === 0 &&
          (other.generation ?? 0) === plan.displaced[i].generation;
        if (!unstarted) return undefined;
        // Its messages go out of date: its next one is sent when its turn comes.
        const { sent_at: _sent, ...unsent } = other;
        const next = { ...unsent, generation: (other.generation ?? 0) + 1 };
        atomic.check(entry).set(entry.key, next, expiry(next));
      }
    }
    return (await atomic.commit()).ok ? queued : undefined;
  }

  async requestRedrive(): Promise<Date> {
    const now = new Date();
    await this.#kv.set(REDRIVE_KEY, now.toISOString(), { expireIn: REDRIVE_KEEP_MS });
    return now;
  }

  async lastRedriveRequest(): Promise<Date | undefined> {
    const at = (await this.#kv.get<string>(REDRIVE_KEY)).value;
    return at ? new Date(at) : undefined;
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
