/**
 * The bytes each owner's blobs take in the bucket, for `BLOB_KEY_MAX_BYTES`:
 * one item of the jobs table per owner (`blob-bytes#<owner>`) counts the
 * bytes of new blobs written each day. Blobs expire `BLOB_TTL_DAYS` after
 * they were written, so the days within that time add up to at least what
 * the owner holds: a count that may run high (a blob written again is not
 * counted again; one rewritten after it expired is), never low.
 */
import { ConditionalCheckFailedException } from "@aws-sdk/client-dynamodb";
import { type DynamoDBDocumentClient, GetCommand, PutCommand } from "@aws-sdk/lib-dynamodb";
import { BlobQuotaError } from "../../core/blobs.ts";
import type { BlobByteCount } from "./s3_blobs.ts";

/** How many times a count that changed meanwhile is read and tried again. */
const TRIES = 10;
const DAY_MS = 86_400_000;

/** Options for {@linkcode DynamoBlobBytes}. */
export interface BlobBytesOptions {
  /** The jobs table. */
  table: string;
  /** The most bytes one owner's blobs may take. */
  limit: number;
  /** How long a blob is kept (`BLOB_TTL_DAYS`). */
  keepDays: number;
}

/** The item as stored. */
interface CountItem {
  /** Bytes of new blobs written, by UTC day (`2026-12-07`). */
  days?: Record<string, number>;
  version?: number;
}

/** A {@linkcode BlobByteCount} on DynamoDB, one read and one conditional write per count. */
export class DynamoBlobBytes implements BlobByteCount {
  #db: DynamoDBDocumentClient;
  #options: BlobBytesOptions;

  constructor(db: DynamoDBDocumentClient, options: BlobBytesOptions) {
    this.#db = db;
    this.#options = options;
  }

  async add(owner: string, bytes: number, now = Date.now()): Promise<void> {
    const { table, limit, keepDays } = this.#options;
    const key = { job_id: `blob-bytes#${owner}` };
    // Written on the first day of the window at the latest: the lifecycle rule rounds up a day.
    const oldest = utcDay(now - (keepDays + 1) * DAY_MS);
    for (let tries = 0; tries < TRIES; tries++) {
      const out = await this.#db.send(
        new GetCommand({ TableName: table, Key: key, ConsistentRead: true }),
      );
      const item = (out.Item ?? {}) as CountItem;
      const days = Object.fromEntries(
        Object.entries(item.days ?? {}).filter(([day]) => day >= oldest),
      );
      const held = Object.values(days).reduce((sum, n) => sum + n, 0);
      if (held + bytes > limit) throw new BlobQuotaError(held, bytes, limit);
      const today = utcDay(now);
      days[today] = (days[today] ?? 0) + bytes;
      try {
        await this.#db.send(
          new PutCommand({
            TableName: table,
            Item: {
              ...key,
              days,
              version: (item.version ?? 0) + 1,
              expires_at: Math.floor(now / 1000) + (keepDays + 2) * 86_400,
            },
            // Nobody counted meanwhile: otherwise read again, so two writers cannot both take the last room.
            ConditionExpression: item.version === undefined
              ? "attribute_not_exists(job_id)"
              : "version = :version",
            ExpressionAttributeValues: item.version === undefined
              ? undefined
              : { ":version": item.version },
          }),
        );
        return;
      } catch (err) {
        if (!(err instanceof ConditionalCheckFailedException)) throw err;
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 20 * (tries + 1)));
      }
    }
    throw new Error(`Cannot count blob bytes: the count kept changing over ${TRIES} tries`);
  }
}

/** The UTC day of an instant, as `YYYY-MM-DD`. */
function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}
