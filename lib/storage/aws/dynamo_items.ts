/**
 * The jobs table's items besides job records, and how every module of the
 * DynamoDB store names them: each conversation's line, a streamed job's
 * reply so far, idempotency keys, the workers' records and the last redrive
 * request. All live in the jobs table under a `job_id` with a prefix or a
 * fixed name, so they are never read as jobs.
 */
import { ConditionalCheckFailedException } from "@aws-sdk/client-dynamodb";
import type { Job } from "../../core/jobs.ts";

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
export const WORKERS_ID = "workers";
/** The jobs-table item recording when an operator last asked for a redrive. */
export const REDRIVE_ID = "redrive-request";
/** Items of the jobs table with no prefix that are no job. */
export const NOT_JOBS = new Set([WORKERS_ID, REDRIVE_ID]);

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
export function lineKey(conversationId: string) {
  return { job_id: `line#${conversationId}` };
}

/**
 * The jobs-table key of a streamed job's reply so far: an item of its own,
 * so that each write costs the size of the reply (1 WRU per KB), not of the
 * whole job record with its context.
 */
export function partialKey(jobId: string) {
  return { job_id: `partial#${jobId}` };
}

/** The jobs-table key of an idempotency key's item: which job holds it, until `expires_at`. */
export function idempotencyKey(id: string) {
  return { job_id: `idempotency#${id}` };
}

/** A job record as stored, without the owner index's attribute. */
export function asJob(item: Record<string, unknown> | undefined): Job | undefined {
  if (!item) return undefined;
  const { [OWNER_INDEX.partitionKey]: _owner, ...job } = item;
  return job as unknown as Job;
}

/** Swallows a failed condition (the write had nothing to do); throws anything else. */
export function ignoreConditionFailure(err: unknown): void {
  if (!(err instanceof ConditionalCheckFailedException)) throw err;
}
