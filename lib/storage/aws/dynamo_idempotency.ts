/**
 * Idempotency keys on DynamoDB (see lib/http/idempotency.ts): an item of the
 * jobs table per key, naming the job that holds it until `expires_at`. It is
 * written in the same transaction as its job, so a key never names a job
 * that was not written.
 */
import { DeleteCommand, type DynamoDBDocumentClient, GetCommand } from "@aws-sdk/lib-dynamodb";
import type { HeldIdempotencyKey, IdempotencyClaim } from "../../core/store.ts";
import { idempotencyKey, ignoreConditionFailure } from "./dynamo_items.ts";

/** The put that makes `jobId` hold an idempotency key, unless a live job holds it. */
export function heldKeyPut(table: string, claim: IdempotencyClaim, jobId: string) {
  return {
    TableName: table,
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

/** The job that holds a live key, or undefined. */
export async function findHeldKey(
  db: DynamoDBDocumentClient,
  table: string,
  id: string,
): Promise<HeldIdempotencyKey | undefined> {
  const out = await db.send(
    new GetCommand({
      TableName: table,
      Key: idempotencyKey(id),
      ConsistentRead: true,
    }),
  );
  const item = out.Item;
  if (!item || Number(item.expires_at) <= Date.now() / 1000) return undefined;
  return {
    jobId: String(item.held_by),
    fingerprint: String(item.fingerprint),
    answer: item.answer as HeldIdempotencyKey["answer"],
  };
}

/** Frees a key that `jobId` holds. */
export async function releaseHeldKey(
  db: DynamoDBDocumentClient,
  table: string,
  id: string,
  jobId: string,
): Promise<void> {
  await db.send(
    new DeleteCommand({
      TableName: table,
      Key: idempotencyKey(id),
      ConditionExpression: "held_by = :job",
      ExpressionAttributeValues: { ":job": jobId },
    }),
  ).catch(ignoreConditionFailure);
}
