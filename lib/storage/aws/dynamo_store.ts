/** The store on DynamoDB: one table of conversations, one of job records. */
import type { QueryCommandInput, TransactWriteCommandInput } from "@aws-sdk/lib-dynamodb";
import { isKept, WORKER_RECORD_KEEP_MS, type WorkerRecord } from "../../core/catalogue.ts";
import { followJob, type ReplySoFar, withReplySoFar } from "../../core/job_changes.ts";
import { isStateless, type Job, type JobStatus } from "../../core/jobs.ts";
import {
  type JobPage,
  type JobSummary,
  type ListJobsOptions,
  ownerIndexValue,
  summarize,
} from "../../core/job_list.ts";
import { jsonBytes, replyText, richReply } from "../../core/messages.ts";
import {
  type CompleteResult,
  type Conversation,
  type CreateOptions,
  type CreateResult,
  type HeldIdempotencyKey,
  type IdempotencyClaim,
  isFinished,
  JobNotFoundError,
  type JobResult,
  RecordTooLargeError,
  type RequeuePlan,
  type StartOptions,
  type StartResult,
  type Store,
} from "../../core/store.ts";
import type { DynamoDocuments } from "./documents.ts";
import { type BatchRead, JobPoller } from "./job_poller.ts";
import { isAwsError } from "./json_protocol.ts";

/** The most a job item may take, in JSON bytes, leaving room below DynamoDB's 400 KB for names. */
const JOB_ITEM_MAX_BYTES = 390_000;

/** The table names the store uses. */
export interface DynamoTables {
  conversations: string;
  jobs: string;
}

/**
 * The jobs-table item holding every worker's heartbeat record in a map by
 * worker id (`workers.<id>`), so the front door reads them all with one
 * GetItem. Records not renewed for a day are dropped when a worker starts.
 */
const WORKERS_ID = "workers";
/** The jobs-table item recording when an operator last asked for a redrive. */
const REDRIVE_ID = "redrive-request";
/** Items of the jobs table that are no job. */
const NOT_JOBS = new Set([WORKERS_ID, REDRIVE_ID]);
/** A redrive request is kept as long as SQS keeps a dead letter: 14 days. */
const REDRIVE_KEEP_S = 14 * 86_400;
/** Index entries read per listing at most, so a page of a rare status costs a bounded amount. */
const MAX_LISTING_READS = 2000;

/**
 * The jobs table's global secondary index of job records by owner and
 * creation time, for `GET /v1/jobs`. Its partition key is an attribute of its
 * own (`owner_key`), since jobs made without API keys have no `owner`; the
 * line, reply-so-far and workers items lack it, so they are not in the index.
 * It projects only a job's summary, so the frequent writes of other fields (a
 * streamed reply, a lease) do not write the index too.
 */
export const OWNER_INDEX = {
  name: "by-owner",
  partitionKey: "owner_key",
  sortKey: "created_at",
} as const;

/**
 * The jobs-table key of a conversation's line: `pending` lists its unfinished
 * jobs in order. Kept apart from the conversation item so that queuing a
 * message costs one small write, not a rewrite of the whole history.
 */
function lineKey(conversationId: string) {
  return { job_id: `line#${conversationId}` };
}

/**
 * The jobs-table key of a streamed job's reply so far: an item of its own,
 * so that each write costs the size of the reply (1 WRU per KB), not of the
 * whole job record with its context.
 */
function partialKey(jobId: string) {
  return { job_id: `partial#${jobId}` };
}

/** The jobs-table key of an idempotency key's item: which job holds it, until `expires_at`. */
function idempotencyKey(id: string) {
  return { job_id: `idempotency#${id}` };
}

/**
 * How often a streamed reply so far is written, at most: with reads every
 * 30 ms while it runs, pieces reach the client about every 70 ms.
 */
export const PARTIAL_EVERY_MS = 60;

/** How long a reply-so-far item is kept (s); DynamoDB's TTL deletes it later. */
const PARTIAL_TTL_S = 86_400;

/**
 * A {@linkcode Store} on two DynamoDB tables: conversations (messages only)
 * and jobs (job records, each conversation's line, the workers' heartbeats).
 */
export class DynamoStore implements Store {
  readonly partialEveryMs = PARTIAL_EVERY_MS;
  #db: DynamoDocuments;
  #tables: DynamoTables;
  /** Whether this store has dropped old worker records yet: once, with its first heartbeat. */
  #pruned = false;
  /** The one read loop of this process for every request that waits on a job. */
  readonly poller: JobPoller;

  constructor(db: DynamoDocuments, tables: DynamoTables) {
    this.#db = db;
    this.#tables = tables;
    this.poller = new JobPoller((ids, withPartial) => this.#readJobs(ids, withPartial));
  }

  async getConversation(conversationId: string): Promise<Conversation | undefined> {
    const out = await this.#db.get({
      TableName: this.#tables.conversations,
      Key: { conversation_id: conversationId },
      ConsistentRead: true,
    });
    return out.Item as Conversation | undefined;
  }

  async createJob(job: Job, options: CreateOptions = {}): Promise<CreateResult> {
    const item = { ...job, [OWNER_INDEX.partitionKey]: ownerIndexValue(job.owner) };
    const put = {
      TableName: this.#tables.jobs,
      Item: item,
      ConditionExpression: "attribute_not_exists(job_id)",
    };
    const claim = options.idempotency;
    if (!claim) {
      await this.#db.put(put);
    } else {
      try {
        // The job and its key in one step: a key never names a job that was not written.
        await this.#db.transactWrite({
          TransactItems: [{ Put: put }, { Put: this.#heldKeyPut(claim, job.job_id) }],
        });
      } catch (err) {
        if (!isAwsError(err, "TransactionCanceledException")) throw err;
        const held = await this.findIdempotencyKey(claim.id);
        if (held) return { state: "repeated", ...held };
        throw err;
      }
    }
    return { state: "created", ...(await this.joinLine(job)) };
  }

  /** The put that makes `jobId` hold an idempotency key, unless a live job holds it. */
  #heldKeyPut(claim: IdempotencyClaim, jobId: string) {
    return {
      TableName: this.#tables.jobs,
      Item: {
        ...idempotencyKey(claim.id),
        held_by: jobId,
        fingerprint: claim.fingerprint,
        answer: claim.answer,
        expires_at: claim.expiresAt,
      },
      // DynamoDB's TTL deletes an expired item within days, not at once.
      ConditionExpression: "attribute_not_exists(job_id) OR expires_at < :now",
      ExpressionAttributeValues: { ":now": Math.floor(Date.now() / 1000) },
    };
  }

  async joinLine(job: Job): Promise<{ first: boolean }> {
    if (isStateless(job)) return { first: true };
    try {
      const out = await this.#db.update({
        TableName: this.#tables.jobs,
        Key: lineKey(job.conversation_id),
        UpdateExpression: "SET pending = list_append(if_not_exists(pending, :empty), :job)",
        ConditionExpression: "attribute_not_exists(pending) OR NOT contains(pending, :id)",
        ExpressionAttributeValues: { ":empty": [], ":job": [job.job_id], ":id": job.job_id },
        ReturnValues: "UPDATED_NEW",
      });
      return { first: out.Attributes?.pending?.[0] === job.job_id };
    } catch (err) {
      if (!isAwsError(err, "ConditionalCheckFailedException")) throw err;
      // In the line already: a repeat of its request lined it up first.
      return { first: (await this.headOfLine(job.conversation_id)) === job.job_id };
    }
  }

  async markSent(jobId: string, generation: number): Promise<void> {
    await this.#db.update({
      TableName: this.#tables.jobs,
      Key: { job_id: jobId },
      UpdateExpression: "SET sent_at = :now",
      ConditionExpression: "attribute_exists(job_id) AND " +
        (generation === 0
          ? "(attribute_not_exists(generation) OR generation = :generation)"
          : "generation = :generation"),
      ExpressionAttributeValues: { ":now": new Date().toISOString(), ":generation": generation },
    }).catch(ignoreConditionFailure);
  }

  async findIdempotencyKey(id: string): Promise<HeldIdempotencyKey | undefined> {
    const out = await this.#db.get({
      TableName: this.#tables.jobs,
      Key: idempotencyKey(id),
      ConsistentRead: true,
    });
    const item = out.Item;
    if (!item || Number(item.expires_at) <= Date.now() / 1000) return undefined;
    return {
      jobId: String(item.held_by),
      fingerprint: String(item.fingerprint),
      answer: item.answer as HeldIdempotencyKey["answer"],
    };
  }

  async releaseIdempotencyKey(id: string, jobId: string): Promise<void> {
    await this.#db.delete({
      TableName: this.#tables.jobs,
      Key: idempotencyKey(id),
      ConditionExpression: "held_by = :job",
      ExpressionAttributeValues: { ":job": jobId },
    }).catch(ignoreConditionFailure);
  }

  async getJob(jobId: string): Promise<Job | undefined> {
    // Job ids are UUIDs; the table's other items (lines, replies so far, the workers' records,
    // the redrive request) are no jobs.
    if (NOT_JOBS.has(jobId) || jobId.includes("#")) return undefined;
    const out = await this.#db.get({
      TableName: this.#tables.jobs,
      Key: { job_id: jobId },
      ConsistentRead: true,
    });
    return asJob(out.Item);
  }

  async startJob(jobId: string, leaseMs: number, options: StartOptions = {}): Promise<StartResult> {
    const now = Date.now();
    const generation = options.generation ?? 0;
    try {
      const out = await this.#db.update({
        TableName: this.#tables.jobs,
        Key: { job_id: jobId },
        UpdateExpression:
          "SET #status = :running, attempts = if_not_exists(attempts, :zero) + :one, started_at = :iso, updated_at = :iso, lease_until = :lease",
        ConditionExpression:
          "attribute_exists(job_id) AND NOT #status IN (:succeeded, :failed, :canceled) " +
          "AND (attribute_not_exists(lease_until) OR lease_until < :now) AND " +
          (generation === 0
            ? "(attribute_not_exists(generation) OR generation = :generation)"
            : "generation = :generation"),
        ExpressionAttributeNames: { "#status": "status" },
        ExpressionAttributeValues: {
          ":generation": generation,
          ":running": "running" satisfies JobStatus,
          ":succeeded": "succeeded" satisfies JobStatus,
          ":failed": "failed" satisfies JobStatus,
          ":canceled": "canceled" satisfies JobStatus,
          ":zero": 0,
          ":one": 1,
          ":iso": new Date(now).toISOString(),
          ":now": now,
          ":lease": now + leaseMs,
        },
        ReturnValues: "ALL_NEW",
      });
      return { state: "started", job: asJob(out.Attributes)! };
    } catch (err) {
      if (!isAwsError(err, "ConditionalCheckFailedException")) throw err;
      // The rare path: read the record to say why it could not be claimed.
      const job = await this.getJob(jobId);
      if (!job) throw new JobNotFoundError(jobId);
      if (isFinished(job)) return { state: "finished", job };
      if ((job.generation ?? 0) !== generation) return { state: "stale", job };
      return { state: "busy", leaseUntil: job.lease_until ?? now };
    }
  }

  async renewLease(jobId: string, leaseMs: number): Promise<void> {
    await this.#db.update({
      TableName: this.#tables.jobs,
      Key: { job_id: jobId },
      UpdateExpression: "SET lease_until = :lease",
      ConditionExpression: "#status = :running",
      ExpressionAttributeNames: { "#status": "status" },
      ExpressionAttributeValues: {
        ":lease": Date.now() + leaseMs,
        ":running": "running" satisfies JobStatus,
      },
    }).catch(ignoreConditionFailure);
  }

  async retryJob(jobId: string, error: string): Promise<void> {
    await this.#settle(jobId, "queued", error);
  }

  async failJob(jobId: string, error: string): Promise<void> {
    await this.#settle(jobId, "failed", error);
  }

  async completeJob(job: Job, result: JobResult): Promise<CompleteResult> {
    if (isStateless(job)) return await this.#completeStateless(job, result);
    for (let attempt = 1;; attempt++) {
      try {
        return await this.#completeOnce(job, result);
      } catch (err) {
        if (!isAwsError(err, "TransactionCanceledException")) throw err;
        if ((await this.getJob(job.job_id))?.status === "succeeded") return "already_completed";
        // Another transaction touched the same item at the same moment: DynamoDB asks us to try again.
        const reasons = err.details.CancellationReasons;
        const conflict = Array.isArray(reasons) &&
          reasons.some((r) => r?.Code === "TransactionConflict");
        if (!conflict || attempt >= 5) throw err;
        await new Promise((r) => setTimeout(r, 20 * attempt + Math.random() * 50));
      }
    }
  }

  async #completeOnce(job: Job, result: JobResult): Promise<CompleteResult> {
    const now = new Date().toISOString();
    const conversation = result.conversation
      ? {
        // A synced conversation becomes what the client last sent, plus the reply.
        UpdateExpression: "SET messages = :all, updated_at = :now, latest_job_at = :created",
        ExpressionAttributeValues: {
          ":all": result.conversation,
          ":now": now,
          ":created": job.created_at,
        },
      }
      : {
        // list_append on the server: concurrent writers never overwrite each other.
        UpdateExpression:
          "SET messages = list_append(if_not_exists(messages, :empty), :new), updated_at = :now, latest_job_at = :created",
        ExpressionAttributeValues: {
          ":empty": [],
          ":new": [job.user_message, result.reply],
          ":now": now,
          ":created": job.created_at,
        },
      };
    await this.#db.transactWrite({
      TransactItems: [
        {
          Update: {
            TableName: this.#tables.conversations,
            Key: { conversation_id: job.conversation_id },
            ...conversation,
          },
        },
        { Update: this.#markSucceeded(job, result, now) },
      ],
    });
    return "completed";
  }

  async #completeStateless(job: Job, result: JobResult): Promise<CompleteResult> {
    try {
      await this.#db.update(this.#markSucceeded(job, result, new Date().toISOString()));
      return "completed";
    } catch (err) {
      if (isAwsError(err, "ConditionalCheckFailedException")) return "already_completed";
      throw err;
    }
  }

  /** The update that records a job's success; its condition makes it happen at most once. */
  #markSucceeded(job: Job, result: JobResult, now: string) {
    const message = richReply(result.reply);
    const { partial: _partial, partial_reasoning: _reasoning, ...kept } = job;
    const bytes = jsonBytes({
      ...kept,
      reply: replyText(result.reply),
      message,
      embeddings: result.embeddings,
      now,
    });
    if (bytes > JOB_ITEM_MAX_BYTES) {
      // DynamoDB would refuse it, and would again on every retry: fail the job once, saying why.
      throw new RecordTooLargeError(
        `Cannot store the reply: with its job it takes ${bytes} bytes, over DynamoDB's 400 KB item limit`,
      );
    }
    return {
      TableName: this.#tables.jobs,
      Key: { job_id: job.job_id },
      UpdateExpression:
        "SET #status = :succeeded, reply = :reply, finish_reason = :finish, #usage = :usage, " +
        (message ? "reply_message = :message, " : "") +
        (result.embeddings ? "embeddings = :embeddings, " : "") +
        "finished_at = :now, updated_at = :now REMOVE #error, lease_until, #partial" +
        (message ? "" : ", reply_message"),
      ConditionExpression: "attribute_exists(job_id) AND #status <> :succeeded",
      ExpressionAttributeNames: {
        "#status": "status",
        "#error": "error",
        "#partial": "partial",
        "#usage": "usage",
      },
      ExpressionAttributeValues: {
        ":succeeded": "succeeded" satisfies JobStatus,
        ":reply": replyText(result.reply),
        ":finish": result.finishReason,
        ":usage": result.usage,
        ":now": now,
        ...(message ? { ":message": message } : {}),
        ...(result.embeddings ? { ":embeddings": result.embeddings } : {}),
      },
    };
  }

  async cancelJob(jobId: string): Promise<Job | undefined> {
    const now = new Date().toISOString();
    try {
      const out = await this.#db.update({
        TableName: this.#tables.jobs,
        Key: { job_id: jobId },
        UpdateExpression: "SET #status = :canceled, finished_at = :now, updated_at = :now",
        ConditionExpression: "#status = :queued",
        ExpressionAttributeNames: { "#status": "status" },
        ExpressionAttributeValues: {
          ":canceled": "canceled" satisfies JobStatus,
          ":queued": "queued" satisfies JobStatus,
          ":now": now,
        },
        ReturnValues: "ALL_NEW",
      });
      return asJob(out.Attributes);
    } catch (err) {
      if (isAwsError(err, "ConditionalCheckFailedException")) return undefined;
      throw err;
    }
  }

  async savePartial(jobId: string, soFar: ReplySoFar): Promise<void> {
    // Unconditional: a late write after the job ended is never read, since
    // only a running job's reply so far is, and TTL deletes it.
    await this.#db.put({
      TableName: this.#tables.jobs,
      Item: {
        ...partialKey(jobId),
        text: soFar.content,
        reasoning: soFar.reasoning || undefined,
        expires_at: Math.floor(Date.now() / 1000) + PARTIAL_TTL_S,
      },
    });
  }

  watchJob(jobId: string, signal: AbortSignal): AsyncIterable<Job | undefined> {
    return followJob(this.poller, jobId, signal);
  }

  /** One BatchGetItem: the jobs, and the replies so far of those in `withPartial`. */
  async #readJobs(jobIds: string[], withPartial: ReadonlySet<string>): Promise<BatchRead> {
    const table = this.#tables.jobs;
    const keys = [
      ...jobIds.map((id) => ({ job_id: id })),
      ...[...withPartial].map(partialKey),
    ];
    const out = await this.#db.batchGet({
      RequestItems: { [table]: { Keys: keys, ConsistentRead: true } },
    });
    const items = new Map<string, Record<string, unknown>>();
    for (const item of out.Responses?.[table] ?? []) items.set(item.job_id as string, item);
    const unprocessed = new Set<string>();
    for (const key of out.UnprocessedKeys?.[table]?.Keys ?? []) {
      const id = String(key.job_id);
      unprocessed.add(id.startsWith("partial#") ? id.slice("partial#".length) : id);
    }
    const jobs = new Map<string, Job>();
    for (const id of jobIds) {
      const job = asJob(items.get(id));
      if (!job || !("status" in job)) continue;
      const partial = items.get(partialKey(id).job_id);
      jobs.set(
        id,
        job.status === "running" && typeof partial?.text === "string"
          ? withReplySoFar(job, {
            content: partial.text,
            reasoning: typeof partial.reasoning === "string" ? partial.reasoning : undefined,
          })
          : job,
      );
    }
    return { jobs, unprocessed };
  }

  async passTurn(conversationId: string, jobId: string): Promise<string | undefined> {
    try {
      const out = await this.#db.update({
        TableName: this.#tables.jobs,
        Key: lineKey(conversationId),
        UpdateExpression: "REMOVE pending[0]",
        ConditionExpression: "pending[0] = :job",
        ExpressionAttributeValues: { ":job": jobId },
        ReturnValues: "ALL_NEW",
      });
      return out.Attributes?.pending?.[0];
    } catch (err) {
      if (!isAwsError(err, "ConditionalCheckFailedException")) throw err;
      return await this.headOfLine(conversationId);
    }
  }

  async headOfLine(conversationId: string): Promise<string | undefined> {
    const out = await this.#db.get({
      TableName: this.#tables.jobs,
      Key: lineKey(conversationId),
      ProjectionExpression: "pending[0]",
      ConsistentRead: true,
    });
    return out.Item?.pending?.[0];
  }

  async saveWorker(record: WorkerRecord): Promise<void> {
    const expires = Math.floor((Date.now() + WORKER_RECORD_KEEP_MS) / 1000);
    const old = this.#pruned ? [] : await this.#oldWorkerIds();
    this.#pruned = true;
    const update = () =>
      this.#db.update({
        TableName: this.#tables.jobs,
        Key: { job_id: WORKERS_ID },
        UpdateExpression: "SET workers.#id = :record, expires_at = :expires" +
          (old.length > 0 ? ` REMOVE ${old.map((_, i) => `workers.#old${i}`).join(", ")}` : ""),
        ExpressionAttributeNames: {
          "#id": record.worker_id,
          ...Object.fromEntries(old.map((id, i) => [`#old${i}`, id])),
        },
        ExpressionAttributeValues: { ":record": record, ":expires": expires },
      });
    try {
      await update();
    } catch (err) {
      // A nested path cannot be set before the map exists: the first heartbeat creates it.
      if (!isAwsError(err, "ValidationException")) throw err;
      try {
        await this.#db.put({
          TableName: this.#tables.jobs,
          Item: {
            job_id: WORKERS_ID,
            workers: { [record.worker_id]: record },
            expires_at: expires,
          },
          ConditionExpression: "attribute_not_exists(job_id)",
        });
      } catch (putErr) {
        if (!isAwsError(putErr, "ConditionalCheckFailedException")) throw putErr;
        await update(); // another worker created it first
      }
    }
  }

  async listWorkers(): Promise<WorkerRecord[]> {
    const out = await this.#db.get({ TableName: this.#tables.jobs, Key: { job_id: WORKERS_ID } });
    const workers = (out.Item?.workers ?? {}) as Record<string, WorkerRecord>;
    return Object.values(workers).filter((record) => isKept(record));
  }

  /** The ids of worker records not renewed for a day. */
  async #oldWorkerIds(): Promise<string[]> {
    const out = await this.#db.get({
      TableName: this.#tables.jobs,
      Key: { job_id: WORKERS_ID },
      ConsistentRead: true,
    });
    const workers = (out.Item?.workers ?? {}) as Record<string, WorkerRecord>;
    return Object.entries(workers).filter(([, record]) => !isKept(record)).map(([id]) => id);
  }

  async listJobs(owner: string | undefined, options: ListJobsOptions): Promise<JobPage> {
    const query: QueryCommandInput = {
      TableName: this.#tables.jobs,
      IndexName: OWNER_INDEX.name,
      KeyConditionExpression: options.since
        ? "#owner = :owner AND #created >= :since"
        : "#owner = :owner",
      ExpressionAttributeNames: {
        "#owner": OWNER_INDEX.partitionKey,
        ...(options.since ? { "#created": OWNER_INDEX.sortKey } : {}),
        ...(options.status ? { "#status": "status" } : {}),
      },
      ExpressionAttributeValues: {
        ":owner": ownerIndexValue(owner),
        ...(options.since ? { ":since": options.since } : {}),
        ...(options.status ? { ":status": options.status } : {}),
      },
      FilterExpression: options.status ? "#status = :status" : undefined,
      ScanIndexForward: false,
      // One more than asked for tells whether there is a next page.
      Limit: options.status ? 100 : options.limit + 1,
    };
    let start: Record<string, unknown> | undefined = options.after && {
      [OWNER_INDEX.partitionKey]: ownerIndexValue(owner),
      created_at: options.after.created_at,
      job_id: options.after.job_id,
    };
    const found: JobSummary[] = [];
    let reads = 0;
    do {
      const out = await this.#db.query({ ...query, ExclusiveStartKey: start });
      found.push(...(out.Items ?? []).map((item) => summarize(item as Job)));
      reads += out.ScannedCount ?? 0;
      start = out.LastEvaluatedKey;
    } while (start && found.length <= options.limit && reads < MAX_LISTING_READS);
    if (found.length > options.limit) {
      const jobs = found.slice(0, options.limit);
      const last = jobs.at(-1)!;
      return { jobs, next: { created_at: last.created_at, job_id: last.job_id } };
    }
    // Out of read budget before the page was full: the next page goes on from there.
    if (start) {
      return {
        jobs: found,
        next: { created_at: String(start.created_at), job_id: String(start.job_id) },
      };
    }
    return { jobs: found };
  }

  async lineOf(conversationId: string): Promise<string[]> {
    const out = await this.#db.get({
      TableName: this.#tables.jobs,
      Key: lineKey(conversationId),
      ConsistentRead: true,
    });
    return out.Item?.pending ?? [];
  }

  async requeueFailedJob(job: Job, plan: RequeuePlan): Promise<Job | undefined> {
    const now = new Date().toISOString();
    const names = { "#status": "status" };
    const requeue = {
      TableName: this.#tables.jobs,
      Key: { job_id: job.job_id },
      UpdateExpression: "SET #status = :queued, attempts = :zero, " +
        "retries = if_not_exists(retries, :zero) + :one, " +
        "generation = if_not_exists(generation, :zero) + :one, retried_at = :now, updated_at = :now " +
        "REMOVE finished_at, started_at, lease_until, #partial, sent_at",
      ConditionExpression: "#status = :failed",
      ExpressionAttributeNames: { ...names, "#partial": "partial" },
      ExpressionAttributeValues: {
        ":queued": "queued" satisfies JobStatus,
        ":failed": "failed" satisfies JobStatus,
        ":zero": 0,
        ":one": 1,
        ":now": now,
      },
    };
    if (isStateless(job)) return await this.#requeue([{ Update: requeue }], job.job_id);
    const { line, position } = plan;
    // The line must still be what the caller saw: element by element, since lines are short.
    const sameLine = line.length === 0
      ? "attribute_not_exists(pending) OR size(pending) = :size"
      : ["size(pending) = :size", ...line.map((_, i) => `pending[${i}] = :p${i}`)].join(" AND ");
    const reorder = {
      TableName: this.#tables.jobs,
      Key: lineKey(job.conversation_id),
      UpdateExpression: "SET pending = :pending",
      ConditionExpression: sameLine,
      ExpressionAttributeValues: {
        ":pending": [...line.slice(0, position), job.job_id, ...line.slice(position)],
        ":size": line.length,
        ...Object.fromEntries(line.map((id, i) => [`:p${i}`, id])),
      },
    };
    // A displaced job's messages go out of date: its next one is sent when its turn comes.
    const displace = plan.displaced.map(({ job_id, generation }) => ({
      Update: {
        TableName: this.#tables.jobs,
        Key: { job_id },
        UpdateExpression: "SET generation = :next REMOVE sent_at",
        ConditionExpression: "#status = :queued AND attempts = :zero AND " +
          (generation === 0
            ? "(attribute_not_exists(generation) OR generation = :generation)"
            : "generation = :generation"),
        ExpressionAttributeNames: names,
        ExpressionAttributeValues: {
          ":queued": "queued" satisfies JobStatus,
          ":zero": 0,
          ":generation": generation,
          ":next": generation + 1,
        },
      },
    }));
    return await this.#requeue(
      [{ Update: requeue }, { Update: reorder }, ...displace],
      job.job_id,
    );
  }

  /** Runs a requeue's transaction; the job after it, or undefined when a condition failed. */
  async #requeue(
    items: NonNullable<TransactWriteCommandInput["TransactItems"]>,
    jobId: string,
  ): Promise<Job | undefined> {
    try {
      await this.#db.transactWrite({ TransactItems: items });
    } catch (err) {
      if (isAwsError(err, "TransactionCanceledException")) return undefined;
      throw err;
    }
    return await this.getJob(jobId);
  }

  async requestRedrive(): Promise<Date> {
    const now = new Date();
    await this.#db.put({
      TableName: this.#tables.jobs,
      Item: {
        job_id: REDRIVE_ID,
        requested_at: now.toISOString(),
        expires_at: Math.floor(now.getTime() / 1000) + REDRIVE_KEEP_S,
      },
    });
    return now;
  }

  async lastRedriveRequest(): Promise<Date | undefined> {
    const out = await this.#db.get({
      TableName: this.#tables.jobs,
      Key: { job_id: REDRIVE_ID },
      ConsistentRead: true,
    });
    return out.Item?.requested_at ? new Date(out.Item.requested_at) : undefined;
  }

  async #settle(jobId: string, status: JobStatus, error: string): Promise<void> {
    const now = new Date().toISOString();
    await this.#db.update({
      TableName: this.#tables.jobs,
      Key: { job_id: jobId },
      UpdateExpression: status === "failed"
        ? "SET #status = :status, #error = :error, updated_at = :now, finished_at = :now REMOVE lease_until"
        : "SET #status = :status, #error = :error, updated_at = :now REMOVE lease_until",
      // Never undo a success that another delivery of the same job recorded.
      ConditionExpression: "attribute_exists(job_id) AND NOT #status IN (:succeeded, :canceled)",
      ExpressionAttributeNames: { "#status": "status", "#error": "error" },
      ExpressionAttributeValues: {
        ":status": status,
        ":succeeded": "succeeded" satisfies JobStatus,
        ":canceled": "canceled" satisfies JobStatus,
        ":error": error,
        ":now": now,
      },
    }).catch(ignoreConditionFailure);
  }
}

/** A job record as stored, without the owner index's attribute. */
function asJob(item: Record<string, unknown> | undefined): Job | undefined {
  if (!item) return undefined;
  const { [OWNER_INDEX.partitionKey]: _owner, ...job } = item;
  return job as unknown as Job;
}

function ignoreConditionFailure(err: unknown): void {
  if (!isAwsError(err, "ConditionalCheckFailedException")) throw err;
}
