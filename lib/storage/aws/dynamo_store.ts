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
import { followJob } from "../../core/job_changes.ts";
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
import { type BatchRead, JobPoller } from "./job_poller.ts";

/** The table names the store uses. */
export interface DynamoTables {
  conversations: string;
  jobs: string;
}

/** The jobs-table item where workers record that they are alive. */
const WORKER_HEARTBEAT_ID = "worker-heartbeat";

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
 * and jobs (job records, each conversation's line, the worker heartbeat).
 */
export class DynamoStore implements Store {
  readonly partialEveryMs = PARTIAL_EVERY_MS;
  #db: DynamoDBDocumentClient;
  #tables: DynamoTables;
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
    // Job ids are UUIDs; the table's other items (lines, replies so far, the heartbeat) are no jobs.
    if (jobId === WORKER_HEARTBEAT_ID || jobId.includes("#")) return undefined;
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

  async completeJob(job: Job, reply: ChatMessage): Promise<CompleteResult> {
    if (isStateless(job)) return await this.#completeStateless(job, reply);
    for (let attempt = 1;; attempt++) {
      try {
        return await this.#completeOnce(job, reply);
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

  async #completeOnce(job: Job, reply: ChatMessage): Promise<CompleteResult> {
    const now = new Date().toISOString();
    await this.#db.send(
      new TransactWriteCommand({
        TransactItems: [
          {
            Update: {
              TableName: this.#tables.conversations,
              Key: { conversation_id: job.conversation_id },
              // list_append on the server: concurrent writers never overwrite each other.
              UpdateExpression:
                "SET messages = list_append(if_not_exists(messages, :empty), :new), updated_at = :now",
              ExpressionAttributeValues: {
                ":empty": [],
                ":new": [job.user_message, reply],
                ":now": now,
              },
            },
          },
          { Update: this.#markSucceeded(job, reply, now) },
        ],
      }),
    );
    return "completed";
  }

  async #completeStateless(job: Job, reply: ChatMessage): Promise<CompleteResult> {
    try {
      await this.#db.send(
        new UpdateCommand(this.#markSucceeded(job, reply, new Date().toISOString())),
      );
      return "completed";
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return "already_completed";
      throw err;
    }
  }

  /** The update that records a job's success; its condition makes it happen at most once. */
  #markSucceeded(job: Job, reply: ChatMessage, now: string) {
    return {
      TableName: this.#tables.jobs,
      Key: { job_id: job.job_id },
      UpdateExpression:
        "SET #status = :succeeded, reply = :reply, finished_at = :now, updated_at = :now REMOVE #error, lease_until, #partial",
      ConditionExpression: "attribute_exists(job_id) AND #status <> :succeeded",
      ExpressionAttributeNames: { "#status": "status", "#error": "error", "#partial": "partial" },
      ExpressionAttributeValues: {
        ":succeeded": "succeeded" satisfies JobStatus,
        ":reply": replyText(reply),
        ":now": now,
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

  async savePartial(jobId: string, text: string): Promise<void> {
    // Unconditional: a late write after the job ended is never read, since
    // only a running job's reply so far is, and TTL deletes it.
    await this.#db.send(
      new PutCommand({
        TableName: this.#tables.jobs,
        Item: {
          ...partialKey(jobId),
          text,
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
      const partial = items.get(partialKey(id).job_id)?.text;
      jobs.set(
        id,
        job.status === "running" && typeof partial === "string" ? { ...job, partial } : job,
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

  async markWorkerSeen(workerId: string): Promise<void> {
    const now = Date.now();
    await this.#db.send(
      new PutCommand({
        TableName: this.#tables.jobs,
        Item: {
          job_id: WORKER_HEARTBEAT_ID,
          worker_id: workerId,
          seen_at: new Date(now).toISOString(),
          expires_at: Math.floor(now / 1000) + 86_400,
        },
      }),
    );
  }

  async lastWorkerSeen(): Promise<Date | undefined> {
    const out = await this.#db.send(
      new GetCommand({ TableName: this.#tables.jobs, Key: { job_id: WORKER_HEARTBEAT_ID } }),
    );
    return out.Item?.seen_at ? new Date(out.Item.seen_at) : undefined;
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
