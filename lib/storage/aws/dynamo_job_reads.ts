/**
 * The batched read behind every request that waits on a job on DynamoDB
 * (job_poller.ts): the jobs, and the replies so far of the streamed ones that
 * run, in one BatchGetItem.
 */
import { BatchGetCommand, type DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { withReplySoFar } from "../../core/job_changes.ts";
import type { Job } from "../../core/jobs.ts";
import { asJob, partialKey } from "./dynamo_items.ts";
import type { BatchRead } from "./job_poller.ts";

/** One BatchGetItem (at most 100 keys): the jobs, and the replies so far of those in `withPartial`. */
/** One BatchGetItem: the jobs, and the replies so far of those in `withPartial`. */
export async function readJobs(
  db: DynamoDBDocumentClient,
  table: string,
  jobIds: string[],
  withPartial: ReadonlySet<string>,
): Promise<BatchRead> {
  const keys = [
    ...jobIds.map((id) => ({ job_id: id })),
    ...[...withPartial].map(partialKey),
  ];
  const out = await db.send(
    new BatchGetCommand({
      RequestItems: { [table]: { Keys: keys, ConsistentRead: true } },
    }),
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
    const job = asJob(items.get(id));
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
