/**
 * Sending failed jobs back to run on DynamoDB (see lib/core/retry.ts): one
 * transaction that requeues the job, puts it back in its line and makes the
 * displaced jobs' messages out of date; and the record of when an operator
 * last asked for a redrive.
 */
import { TransactionCanceledException } from "@aws-sdk/client-dynamodb";
import {
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  TransactWriteCommand,
  type TransactWriteCommandInput,
} from "@aws-sdk/lib-dynamodb";
import { isStateless, type Job, type JobStatus } from "../../core/jobs.ts";
import type { RequeuePlan } from "../../core/store.ts";
import { lineKey, REDRIVE_ID } from "./dynamo_items.ts";

/** A redrive request is kept as long as SQS keeps a dead letter: 14 days. */
const REDRIVE_KEEP_S = 14 * 86_400;

/**
 * Requeues a failed job by `plan` in one transaction, if the job is still
 * failed and its line and the displaced jobs are as the plan saw them.
 */
export async function requeueFailedJob(
  db: DynamoDBDocumentClient,
  table: string,
  job: Job,
  plan: RequeuePlan,
): Promise<boolean> {
  const now = new Date().toISOString();
  const names = { "#status": "status" };
  const requeue = {
    TableName: table,
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
  if (isStateless(job)) return await applied(db, [{ Update: requeue }]);
  const { line, position } = plan;
  // The line must still be what the caller saw: element by element, since lines are short.
  const sameLine = line.length === 0
    ? "attribute_not_exists(pending) OR size(pending) = :size"
    : ["size(pending) = :size", ...line.map((_, i) => `pending[${i}] = :p${i}`)].join(" AND ");
  const reorder = {
    TableName: table,
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
      TableName: table,
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
  return await applied(db, [{ Update: requeue }, { Update: reorder }, ...displace]);
}

/** Runs a requeue's transaction; whether it was applied (false when a condition failed). */
async function applied(
  db: DynamoDBDocumentClient,
  items: NonNullable<TransactWriteCommandInput["TransactItems"]>,
): Promise<boolean> {
  try {
    await db.send(new TransactWriteCommand({ TransactItems: items }));
    return true;
  } catch (err) {
    if (err instanceof TransactionCanceledException) return false;
    throw err;
  }
}

/** Records that an operator asked to redrive the dead letters now; returns when. */
export async function requestRedrive(db: DynamoDBDocumentClient, table: string): Promise<Date> {
  const now = new Date();
  await db.send(
    new PutCommand({
      TableName: table,
      Item: {
        job_id: REDRIVE_ID,
        requested_at: now.toISOString(),
        expires_at: Math.floor(now.getTime() / 1000) + REDRIVE_KEEP_S,
      },
    }),
  );
  return now;
}

/** When an operator last asked to redrive the dead letters. */
export async function lastRedriveRequest(
  db: DynamoDBDocumentClient,
  table: string,
): Promise<Date | undefined> {
  const out = await db.send(
    new GetCommand({
      TableName: table,
      Key: { job_id: REDRIVE_ID },
      ConsistentRead: true,
    }),
  );
  return out.Item?.requested_at ? new Date(out.Item.requested_at) : undefined;
}
