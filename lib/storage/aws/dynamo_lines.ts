/**
 * Each conversation's line of unfinished jobs on DynamoDB: an item of the
 * jobs table per conversation (`line#<id>`), its `pending` list head first.
 * Only the job at the head is on the queue (see lib/core/turns.ts).
 */
import { ConditionalCheckFailedException } from "@aws-sdk/client-dynamodb";
import { type DynamoDBDocumentClient, GetCommand, UpdateCommand } from "@aws-sdk/lib-dynamodb";
import { isStateless, type Job } from "../../core/jobs.ts";
import { lineKey } from "./dynamo_items.ts";

/** The conversations' lines in the jobs table `table`. */
export class DynamoLines {
  #db: DynamoDBDocumentClient;
  #table: string;

  constructor(db: DynamoDBDocumentClient, table: string) {
    this.#db = db;
    this.#table = table;
  }

  /** Puts a job at the end of its line unless it is there; whether it is at the head. */
  async joinLine(job: Job): Promise<{ first: boolean }> {
    if (isStateless(job)) return { first: true };
    try {
      const out = await this.#db.send(
        new UpdateCommand({
          TableName: this.#table,
          Key: lineKey(job.conversation_id),
          UpdateExpression: "SET pending = list_append(if_not_exists(pending, :empty), :job)",
          ConditionExpression: "attribute_not_exists(pending) OR NOT contains(pending, :id)",
          ExpressionAttributeValues: { ":empty": [], ":job": [job.job_id], ":id": job.job_id },
          ReturnValues: "UPDATED_NEW",
        }),
      );
      return { first: out.Attributes?.pending?.[0] === job.job_id };
    } catch (err) {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
      // In the line already: a repeat of its request lined it up first.
      return { first: (await this.headOfLine(job.conversation_id)) === job.job_id };
    }
  }

  /** Takes `jobId` off the head of the line, if it is there; the job now at the head. */
  async passTurn(conversationId: string, jobId: string): Promise<string | undefined> {
    try {
      const out = await this.#db.send(
        new UpdateCommand({
          TableName: this.#table,
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

  /** The job at the head of a line. */
  async headOfLine(conversationId: string): Promise<string | undefined> {
    const out = await this.#db.send(
      new GetCommand({
        TableName: this.#table,
        Key: lineKey(conversationId),
        ProjectionExpression: "pending[0]",
        ConsistentRead: true,
      }),
    );
    return out.Item?.pending?.[0];
  }

  /** A line's job ids, head first. */
  async lineOf(conversationId: string): Promise<string[]> {
    const out = await this.#db.send(
      new GetCommand({
        TableName: this.#table,
        Key: lineKey(conversationId),
        ConsistentRead: true,
      }),
    );
    return out.Item?.pending ?? [];
  }
}
