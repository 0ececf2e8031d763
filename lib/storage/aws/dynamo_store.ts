/**
 * The store on DynamoDB: one table of conversations, one of job records and
 * the items beside them (dynamo_items.ts). Listing, requeues, idempotency
 * keys and the workers' records live in modules of their own.
 */
import {
  ConditionalCheckFailedException,
  TransactionCanceledException,
} from "@aws-sdk/client-dynamodb";
import {
  DeleteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  TransactWriteCommand,
  UpdateCommand,
} from "@aws-sdk/lib-dynamodb";
import type { WorkerRecord } from "../../core/catalogue.ts";
import { followJob, type ReplySoFar } from "../../core/job_changes.ts";
import { isStateless, type Job, type JobStatus } from "../../core/jobs.ts";
import { type JobPage, type ListJobsOptions, ownerIndexValue } from "../../core/job_list.ts";
import { jsonBytes, replyText, richReply } from "../../core/messages.ts";
import {
  type CompleteResult,
  type Conversation,
  type CreateOptions,
  type CreateResult,
  type HeldIdempotencyKey,
  isFinished,
  JobNotFoundError,
  type JobResult,
  RecordTooLargeError,
  type RequeuePlan,
  type StartOptions,
  type StartResult,
  type Store,
} from "../../core/store.ts";
import { findHeldKey, heldKeyPut, releaseHeldKey } from "./dynamo_idempotency.ts";
import {
  asJob,
  type DynamoTables,
  ignoreConditionFailure,
  NOT_JOBS,
  OWNER_INDEX,
  partialKey,
} from "./dynamo_items.ts";
import { queryOwnerJobs } from "./dynamo_job_list.ts";
import { DynamoLines } from "./dynamo_lines.ts";
import { lastRedriveRequest, requestRedrive, requeueFailedJob } from "./dynamo_requeue.ts";
import { readJobs } from "./dynamo_job_reads.ts";
import { DynamoWorkerRecords } from "./dynamo_worker_records.ts";
import { JobPoller } from "./job_poller.ts";

/** The most a job item may take, in JSON bytes, leaving room below DynamoDB's 400 KB for names. */
const JOB_ITEM_MAX_BYTES = 390_000;

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
  #workers: DynamoWorkerRecords;
  #lines: DynamoLines;
  /** The one read loop of this process for every request that waits on a job. */
  readonly poller: JobPoller;

  constructor(db: DynamoDBDocumentClient, tables: DynamoTables) {
    this.#db = db;
    this.#tables = tables;
    this.#workers = new DynamoWorkerRecords(db, tables.jobs);
    this.#lines = new DynamoLines(db, tables.jobs);
    this.poller = new JobPoller((ids, withPartial) => readJobs(db, tables.jobs, ids, withPartial));
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

  async createJob(job: Job, options: CreateOptions = {}): Promise<CreateResult> {
    const item = { ...job, [OWNER_INDEX.partitionKey]: ownerIndexValue(job.owner) };
    const put = {
      TableName: this.#tables.jobs,
      Item: item,
      ConditionExpression: "attribute_not_exists(job_id)",
    };
    const claim = options.idempotency;
    if (!claim) {
      await this.#db.send(new PutCommand(put));
    } else {
      try {
        // The job and its key in one step: a key never names a job that was not written.
        await this.#db.send(
          new TransactWriteCommand({
            TransactItems: [{ Put: put }, {
              Put: heldKeyPut(this.#tables.jobs, claim, job.job_id),
            }],
          }),
        );
      } catch (err) {
        if (!(err instanceof TransactionCanceledException)) throw err;
        const held = await this.findIdempotencyKey(claim.id);
        if (held) return { state: "repeated", ...held };
        throw err;
      }
    }
    return { state: "created", ...(await this.joinLine(job)) };
  }

  async markSent(jobId: string, generation: number): Promise<void> {
    await this.#db.send(
      new UpdateCommand({
        TableName: this.#tables.jobs,
        Key: { job_id: jobId },
        UpdateExpression: "SET sent_at = :now",
        ConditionExpression: "attribute_exists(job_id) AND " +
          (generation === 0
            ? "(attribute_not_exists(generation) OR generation = :generation)"
            : "generation = :generation"),
        ExpressionAttributeValues: { ":now": new Date().toISOString(), ":generation": generation },
      }),
    ).catch(ignoreConditionFailure);
  }

  findIdempotencyKey(id: string): Promise<HeldIdempotencyKey | undefined> {
    return findHeldKey(this.#db, this.#tables.jobs, id);
  }

  releaseIdempotencyKey(id: string, jobId: string): Promise<void> {
    return releaseHeldKey(this.#db, this.#tables.jobs, id, jobId);
  }

  joinLine(job: Job): Promise<{ first: boolean }> {
    return this.#lines.joinLine(job);
  }

  passTurn(conversationId: string, jobId: string): Promise<string | undefined> {
    return this.#lines.passTurn(conversationId, jobId);
  }

  headOfLine(conversationId: string): Promise<string | undefined> {
    return this.#lines.headOfLine(conversationId);
  }

  lineOf(conversationId: string): Promise<string[]> {
    return this.#lines.lineOf(conversationId);
  }

  async getJob(jobId: string): Promise<Job | undefined> {
    // Job ids are UUIDs; the table's other items (lines, replies so far, the workers' records,
    // the redrive request) are no jobs.
    if (NOT_JOBS.has(jobId) || jobId.includes("#")) return undefined;
    const out = await this.#db.send(
      new GetCommand({
        TableName: this.#tables.jobs,
        Key: { job_id: jobId },
        ConsistentRead: true,
      }),
    );
    return asJob(out.Item);
  }

  async startJob(jobId: string, leaseMs: number, options: StartOptions = {}): Promise<StartResult> {
    const now = Date.now();
    const generation = options.generation ?? 0;
    try {
      const out = await this.#db.send(
        new UpdateCommand({
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
        }),
      );
      return { state: "started", job: asJob(out.Attributes)! };
    } catch (err) {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
      // The rare path: read the record to say why it could not be claimed.
      const job = await this.getJob(jobId);
      if (!job) throw new JobNotFoundError(jobId);
      if (isFinished(job)) return { state: "finished", job };
      if ((job.generation ?? 0) !== generation) return { state: "stale", job };
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
      return asJob(out.Attributes);
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return undefined;
      throw err;
    }
  }

  async deleteJob(jobId: string): Promise<boolean> {
    if (NOT_JOBS.has(jobId) || jobId.includes("#")) return false;
    try {
      await this.#db.send(
        new DeleteCommand({
          TableName: this.#tables.jobs,
          Key: { job_id: jobId },
          ConditionExpression: "#status IN (:succeeded, :failed, :canceled)",
          ExpressionAttributeNames: { "#status": "status" },
          ExpressionAttributeValues: {
            ":succeeded": "succeeded" satisfies JobStatus,
            ":failed": "failed" satisfies JobStatus,
            ":canceled": "canceled" satisfies JobStatus,
          },
        }),
      );
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return false;
      throw err;
    }
    // The owner index follows the item; a streamed job's last reply so far would wait for TTL.
    await this.#db.send(
      new DeleteCommand({ TableName: this.#tables.jobs, Key: partialKey(jobId) }),
    );
    return true;
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

  saveWorker(record: WorkerRecord): Promise<void> {
    return this.#workers.save(record);
  }

  listWorkers(): Promise<WorkerRecord[]> {
    return this.#workers.list();
  }

  listJobs(owner: string | undefined, options: ListJobsOptions): Promise<JobPage> {
    return queryOwnerJobs(this.#db, this.#tables.jobs, owner, options);
  }

  async requeueFailedJob(job: Job, plan: RequeuePlan): Promise<Job | undefined> {
    return await requeueFailedJob(this.#db, this.#tables.jobs, job, plan)
      ? await this.getJob(job.job_id)
      : undefined;
  }

  requestRedrive(): Promise<Date> {
    return requestRedrive(this.#db, this.#tables.jobs);
  }

  lastRedriveRequest(): Promise<Date | undefined> {
    return lastRedriveRequest(this.#db, this.#tables.jobs);
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
