/** The store on DynamoDB: one table of conversations, one of job records. */
import {
  ConditionalCheckFailedException,
  TransactionCanceledException,
} from "@aws-sdk/client-dynamodb";
import {
  BatchGetCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  TransactWriteCommand,
  UpdateCommand,
} from "@aws-sdk/lib-dynamodb";
import { isKept, WORKER_RECORD_KEEP_MS, type WorkerRecord } from "../../core/catalogue.ts";
import { followJob, type ReplySoFar, withReplySoFar } from "../../core/job_changes.ts";
import { isStateless, type Job, type JobStatus } from "../../core/jobs.ts";
import { replyText, richReply } from "../../core/messages.ts";
import {
  type CompleteResult,
  type Conversation,
  isFinished,
  JobNotFoundError,
  type JobResult,
  type StartResult,
  type Store,
} from "../../core/store.ts";
import { type BatchRead, JobPoller } from "./job_poller.ts";

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
  #db: DynamoDBDocumentClient;
  #tables: DynamoTables;
  /** Whether this store has dropped old worker records yet: once, with its first heartbeat. */
  #pruned = false;
  /** The one read loop of this process for every request that waits on a job. */
  readonly poller: JobPoller;

  constructor(db: DynamoDBDocumentClient, tables: DynamoTables) {
    this.#db = db;
    this.#tables = tables;
    this.poller = new JobPoller((ids, withPartial) => this.#readJobs(ids, withPartial));
  }

  async getConversation(conversationId: string): Promise<Conversation | undefined> {
    const out = await this.#db.send(
      new GetCommand({
        TableName: this.#tables.conversations,
        Key: { conversation_id: conversationId },
        ConsistentRead: true,
      }),
    );
    return out.Item as Conversation | undefined;
  }

  async createJob(job: Job): Promise<{ first: boolean }> {
    await this.#db.send(
      new PutCommand({
        TableName: this.#tables.jobs,
        Item: job,
        ConditionExpression: "attribute_not_exists(job_id)",
      }),
    );
    if (isStateless(job)) return { first: true };
    const out = await this.#db.send(
      new UpdateCommand({
        TableName: this.#tables.jobs,
        Key: lineKey(job.conversation_id),
        UpdateExpression: "SET pending = list_append(if_not_exists(pending, :empty), :job)",
        ExpressionAttributeValues: { ":empty": [], ":job": [job.job_id] },
        ReturnValues: "UPDATED_NEW",
      }),
    );
    return { first: out.Attributes?.pending?.[0] === job.job_id };
  }

  async getJob(jobId: string): Promise<Job | undefined> {
    // Job ids are UUIDs; the table's other items (lines, replies so far, the workers' records) are no jobs.
    if (jobId === WORKERS_ID || jobId.includes("#")) return undefined;
    const out = await this.#db.send(
      new GetCommand({
        TableName: this.#tables.jobs,
        Key: { job_id: jobId },
        ConsistentRead: true,
      }),
    );
    return out.Item as Job | undefined;
  }

  async startJob(jobId: string, leaseMs: number): Promise<StartResult> {
    const now = Date.now();
    try {
      const out = await this.#db.send(
        new UpdateCommand({
          TableName: this.#tables.jobs,
          Key: { job_id: jobId },
          UpdateExpression:
            "SET #status = :running, attempts = if_not_exists(attempts, :zero) + :one, started_at = :iso, updated_at = :iso, lease_until = :lease",
          ConditionExpression:
            "attribute_exists(job_id) AND NOT #status IN (:succeeded, :failed, :canceled) " +
            "AND (attribute_not_exists(lease_until) OR lease_until < :now)",
          ExpressionAttributeNames: { "#status": "status" },
          ExpressionAttributeValues: {
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
        }),
      );
      return { state: "started", job: out.Attributes as Job };
    } catch (err) {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
      // The rare path: read the record to say why it could not be claimed.
      const job = await this.getJob(jobId);
      if (!job) throw new JobNotFoundError(jobId);
      if (isFinished(job)) return { state: "finished", job };
      return { state: "busy", leaseUntil: job.lease_until ?? now };
    }
  }

  async renewLease(jobId: string, leaseMs: number): Promise<void> {
    await this.#db.send(
      new UpdateCommand({
        TableName: this.#tables.jobs,
        Key: { job_id: jobId },
        UpdateExpression: "SET lease_until = :lease",
        ConditionExpression: "#status = :running",
        ExpressionAttributeNames: { "#status": "status" },
        ExpressionAttributeValues: {
          ":lease": Date.now() + leaseMs,
          ":running": "running" satisfies JobStatus,
        },
      }),
    ).catch(ignoreConditionFailure);
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
        if (!(err instanceof TransactionCanceledException)) throw err;
        if ((await this.getJob(job.job_id))?.status === "succeeded") return "already_completed";
        // Another transaction touched the same item at the same moment: DynamoDB asks us to try again.
        const conflict = err.CancellationReasons?.some((r) => r.Code === "TransactionConflict");
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
        UpdateExpression: "SET messages = :all, updated_at = :now",
        ExpressionAttributeValues: { ":all": result.conversation, ":now": now },
      }
      : {
        // list_append on the server: concurrent writers never overwrite each other.
        UpdateExpression:
          "SET messages = list_append(if_not_exists(messages, :empty), :new), updated_at = :now",
        ExpressionAttributeValues: {
          ":empty": [],
          ":new": [job.user_message, result.reply],
          ":now": now,
        },
      };
    await this.#db.send(
      new TransactWriteCommand({
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
      }),
    );
    return "completed";
  }

  async #completeStateless(job: Job, result: JobResult): Promise<CompleteResult> {
    try {
      await this.#db.send(
        new UpdateCommand(this.#markSucceeded(job, result, new Date().toISOString())),
      );
      return "completed";
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return "already_completed";
      throw err;
    }
  }

  /** The update that records a job's success; its condition makes it happen at most once. */
  #markSucceeded(job: Job, result: JobResult, now: string) {
    const message = richReply(result.reply);
    return {
      TableName: this.#tables.jobs,
      Key: { job_id: job.job_id },
      UpdateExpression:
        "SET #status = :succeeded, reply = :reply, finish_reason = :finish, #usage = :usage, " +
        (message ? "reply_message = :message, " : "") +
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
      },
    };
  }

  async cancelJob(jobId: string): Promise<Job | undefined> {
    const now = new Date().toISOString();
    try {
      const out = await this.#db.send(
        new UpdateCommand({
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
        }),
      );
      return out.Attributes as Job;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return undefined;
      throw err;
    }
  }

  async savePartial(jobId: string, soFar: ReplySoFar): Promise<void> {
    // Unconditional: a late write after the job ended is never read, since
    // only a running job's reply so far is, and TTL deletes it.
    await this.#db.send(
      new PutCommand({
        TableName: this.#tables.jobs,
        Item: {
          ...partialKey(jobId),
          text: soFar.content,
          reasoning: soFar.reasoning || undefined,
          expires_at: Math.floor(Date.now() / 1000) + PARTIAL_TTL_S,
        },
      }),
    );
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
    const out = await this.#db.send(
      new BatchGetCommand({ RequestItems: { [table]: { Keys: keys, ConsistentRead: true } } }),
    );
    const items = new Map<string, Record<string, unknown>>();
    for (const item of out.Responses?.[table] ?? []) items.set(item.job_id as string, item);
    const unprocessed = new Set<string>();
    for (const key of out.UnprocessedKeys?.[table]?.Keys ?? []) {
      const id = String(key.job_id);
      unprocessed.add(id.startsWith("partial#") ? id.slice("partial#".length) : id);
    }
    const jobs = new Map<string, Job>();
    for (const id of jobIds) {
      const job = items.get(id) as Job | undefined;
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
      const out = await this.#db.send(
        new UpdateCommand({
          TableName: this.#tables.jobs,
          Key: lineKey(conversationId),
          UpdateExpression: "REMOVE pending[0]",
          ConditionExpression: "pending[0] = :job",
          ExpressionAttributeValues: { ":job": jobId },
          ReturnValues: "ALL_NEW",
        }),
      );
      return out.Attributes?.pending?.[0];
    } catch (err) {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
      return await this.headOfLine(conversationId);
    }
  }

  async headOfLine(conversationId: string): Promise<string | undefined> {
    const out = await this.#db.send(
      new GetCommand({
        TableName: this.#tables.jobs,
        Key: lineKey(conversationId),
        ProjectionExpression: "pending[0]",
        ConsistentRead: true,
      }),
    );
    return out.Item?.pending?.[0];
  }

  async saveWorker(record: WorkerRecord): Promise<void> {
    const expires = Math.floor((Date.now() + WORKER_RECORD_KEEP_MS) / 1000);
    const old = this.#pruned ? [] : await this.#oldWorkerIds();
    this.#pruned = true;
    const update = () =>
      this.#db.send(
        new UpdateCommand({
          TableName: this.#tables.jobs,
          Key: { job_id: WORKERS_ID },
          UpdateExpression: "SET workers.#id = :record, expires_at = :expires" +
            (old.length > 0 ? ` REMOVE ${old.map((_, i) => `workers.#old${i}`).join(", ")}` : ""),
          ExpressionAttributeNames: {
            "#id": record.worker_id,
            ...Object.fromEntries(old.map((id, i) => [`#old${i}`, id])),
          },
          ExpressionAttributeValues: { ":record": record, ":expires": expires },
        }),
      );
    try {
      await update();
    } catch (err) {
      // A nested path cannot be set before the map exists: the first heartbeat creates it.
      if (!(err instanceof Error && err.name === "ValidationException")) throw err;
      try {
        await this.#db.send(
          new PutCommand({
            TableName: this.#tables.jobs,
            Item: {
              job_id: WORKERS_ID,
              workers: { [record.worker_id]: record },
              expires_at: expires,
            },
            ConditionExpression: "attribute_not_exists(job_id)",
          }),
        );
      } catch (putErr) {
        if (!(putErr instanceof ConditionalCheckFailedException)) throw putErr;
        await update(); // another worker created it first
      }
    }
  }

  async listWorkers(): Promise<WorkerRecord[]> {
    const out = await this.#db.send(
      new GetCommand({ TableName: this.#tables.jobs, Key: { job_id: WORKERS_ID } }),
    );
    const workers = (out.Item?.workers ?? {}) as Record<string, WorkerRecord>;
    return Object.values(workers).filter((record) => isKept(record));
  }

  /** The ids of worker records not renewed for a day. */
  async #oldWorkerIds(): Promise<string[]> {
    const out = await this.#db.send(
      new GetCommand({
        TableName: this.#tables.jobs,
        Key: { job_id: WORKERS_ID },
        ConsistentRead: true,
      }),
    );
    const workers = (out.Item?.workers ?? {}) as Record<string, WorkerRecord>;
    return Object.entries(workers).filter(([, record]) => !isKept(record)).map(([id]) => id);
  }

  async #settle(jobId: string, status: JobStatus, error: string): Promise<void> {
    const now = new Date().toISOString();
    await this.#db.send(
      new UpdateCommand({
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
      }),
    ).catch(ignoreConditionFailure);
  }
}

function ignoreConditionFailure(err: unknown): void {
  if (!(err instanceof ConditionalCheckFailedException)) throw err;
}
