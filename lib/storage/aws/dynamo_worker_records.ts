/**
 * The workers' heartbeat records on DynamoDB: one item of the jobs table
 * holds them all in a map by worker id, so the front door reads every record
 * with one GetItem (see {@linkcode WORKERS_ID}).
 */
import { ConditionalCheckFailedException } from "@aws-sdk/client-dynamodb";
import {
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  UpdateCommand,
} from "@aws-sdk/lib-dynamodb";
import { isKept, WORKER_RECORD_KEEP_MS, type WorkerRecord } from "../../core/catalogue.ts";
import { WORKERS_ID } from "./dynamo_items.ts";

/** The workers' records in the jobs table `table`. */
export class DynamoWorkerRecords {
  #db: DynamoDBDocumentClient;
  #table: string;
  /** Whether old records have been dropped yet: once, with this process's first heartbeat. */
  #pruned = false;

  constructor(db: DynamoDBDocumentClient, table: string) {
    this.#db = db;
    this.#table = table;
  }

  /** Writes a worker's record, replacing its previous one. */
  async save(record: WorkerRecord): Promise<void> {
    const expires = Math.floor((Date.now() + WORKER_RECORD_KEEP_MS) / 1000);
    const old = this.#pruned ? [] : await this.#oldWorkerIds();
    this.#pruned = true;
    const update = () =>
      this.#db.send(
        new UpdateCommand({
          TableName: this.#table,
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
            TableName: this.#table,
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

  /** Every record renewed in the last day, in one eventually consistent read. */
  async list(): Promise<WorkerRecord[]> {
    const out = await this.#db.send(
      new GetCommand({ TableName: this.#table, Key: { job_id: WORKERS_ID } }),
    );
    const workers = (out.Item?.workers ?? {}) as Record<string, WorkerRecord>;
    return Object.values(workers).filter((record) => isKept(record));
  }

  /** The ids of worker records not renewed for a day. */
  async #oldWorkerIds(): Promise<string[]> {
    const out = await this.#db.send(
      new GetCommand({
        TableName: this.#table,
        Key: { job_id: WORKERS_ID },
        ConsistentRead: true,
      }),
    );
    const workers = (out.Item?.workers ?? {}) as Record<string, WorkerRecord>;
    return Object.entries(workers).filter(([, record]) => !isKept(record)).map(([id]) => id);
  }
}
