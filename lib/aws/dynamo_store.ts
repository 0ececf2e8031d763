/** The store on DynamoDB: one table of conversations, one of job records. */
import {
  ConditionalCheckFailedException,
  TransactionCanceledException,
} from "@aws-sdk/client-dynamodb";
import {
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  TransactWriteCommand,
  UpdateCommand,
} from "@aws-sdk/lib-dynamodb";
import type { Job, JobStatus } from "../jobs.ts";
import type { ChatMessage } from "../messages.ts";
import { type CompleteResult, type Conversation, JobNotFoundError, type Store } from "../store.ts";

/** The table names the store uses. */
export interface DynamoTables {
  conversations: string;
  jobs: string;
}

/** A {@linkcode Store} on two DynamoDB tables. */
export class DynamoStore implements Store {
  #db: DynamoDBDocumentClient;
  #tables: DynamoTables;

  constructor(db: DynamoDBDocumentClient, tables: DynamoTables) {
    this.#db = db;
    this.#tables = tables;
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

  async createJob(job: Job): Promise<void> {
    await this.#db.send(
      new PutCommand({
        TableName: this.#tables.jobs,
        Item: job,
        ConditionExpression: "attribute_not_exists(job_id)",
      }),
    );
  }

  async getJob(jobId: string): Promise<Job | undefined> {
    const out = await this.#db.send(
      new GetCommand({
        TableName: this.#tables.jobs,
        Key: { job_id: jobId },
        ConsistentRead: true,
      }),
    );
    return out.Item as Job | undefined;
  }

  async startJob(jobId: string, attempt: number): Promise<Job | undefined> {
    const now = new Date().toISOString();
    try {
      const out = await this.#db.send(
        new UpdateCommand({
          TableName: this.#tables.jobs,
          Key: { job_id: jobId },
          UpdateExpression:
            "SET #status = :running, attempts = :attempt, started_at = :now, updated_at = :now",
          ConditionExpression: "attribute_exists(job_id) AND #status <> :succeeded",
          ExpressionAttributeNames: { "#status": "status" },
          ExpressionAttributeValues: {
            ":running": "running" satisfies JobStatus,
            ":succeeded": "succeeded" satisfies JobStatus,
            ":attempt": attempt,
            ":now": now,
          },
          ReturnValues: "ALL_NEW",
          ReturnValuesOnConditionCheckFailure: "ALL_OLD",
        }),
      );
      return out.Attributes as Job;
    } catch (err) {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
      if (!err.Item) throw new JobNotFoundError(jobId);
      return undefined;
    }
  }

  async retryJob(jobId: string, error: string): Promise<void> {
    await this.#finish(jobId, "queued", error);
  }

  async failJob(jobId: string, error: string): Promise<void> {
    await this.#finish(jobId, "failed", error);
  }

  async completeJob(job: Job, reply: ChatMessage): Promise<CompleteResult> {
    const now = new Date().toISOString();
    try {
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
            {
              Update: {
                TableName: this.#tables.jobs,
                Key: { job_id: job.job_id },
                UpdateExpression:
                  "SET #status = :succeeded, reply = :reply, finished_at = :now, updated_at = :now REMOVE #error",
                ConditionExpression: "attribute_exists(job_id) AND #status <> :succeeded",
                ExpressionAttributeNames: { "#status": "status", "#error": "error" },
                ExpressionAttributeValues: {
                  ":succeeded": "succeeded" satisfies JobStatus,
                  ":reply": typeof reply.content === "string"
                    ? reply.content
                    : JSON.stringify(reply.content),
                  ":now": now,
                },
              },
            },
          ],
        }),
      );
      return "completed";
    } catch (err) {
      if (
        err instanceof TransactionCanceledException &&
        (await this.getJob(job.job_id))?.status === "succeeded"
      ) {
        return "already_completed";
      }
      throw err;
    }
  }

  async #finish(jobId: string, status: JobStatus, error: string): Promise<void> {
    const now = new Date().toISOString();
    await this.#db.send(
      new UpdateCommand({
        TableName: this.#tables.jobs,
        Key: { job_id: jobId },
        UpdateExpression: status === "failed"
          ? "SET #status = :status, #error = :error, updated_at = :now, finished_at = :now"
          : "SET #status = :status, #error = :error, updated_at = :now",
        // Never undo a success that another delivery of the same job recorded.
        ConditionExpression: "attribute_exists(job_id) AND #status <> :succeeded",
        ExpressionAttributeNames: { "#status": "status", "#error": "error" },
        ExpressionAttributeValues: {
          ":status": status,
          ":succeeded": "succeeded" satisfies JobStatus,
          ":error": error,
          ":now": now,
        },
      }),
    ).catch((err) => {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
    });
  }
}
