/** An owner's jobs on DynamoDB, through the jobs table's owner index, newest first. */
import {
  type DynamoDBDocumentClient,
  QueryCommand,
  type QueryCommandInput,
} from "@aws-sdk/lib-dynamodb";
import {
  type JobPage,
  type JobSummary,
  type ListJobsOptions,
  ownerIndexValue,
  summarize,
} from "../../core/job_list.ts";
import type { Job } from "../../core/jobs.ts";
import { OWNER_INDEX } from "./dynamo_items.ts";

/** Index entries read per listing at most, so a page of a rare status costs a bounded amount. */
const MAX_LISTING_READS = 2000;

/** A page of `owner`'s jobs from the jobs table `table`. */
export async function queryOwnerJobs(
  db: DynamoDBDocumentClient,
  table: string,
  owner: string | undefined,
  options: ListJobsOptions,
): Promise<JobPage> {
  const query: QueryCommandInput = {
    TableName: table,
    IndexName: OWNER_INDEX.name,
    KeyConditionExpression: options.since
      ? "#owner = :owner AND #created >= :since"
      : "#owner = :owner",
    ExpressionAttributeNames: {
      "#owner": OWNER_INDEX.partitionKey,
      ...(options.since ? { "#created": OWNER_INDEX.sortKey } : {}),
      ...(options.status ? { "#status": "status" } : {}),
    },
    ExpressionAttributeValues: {
      ":owner": ownerIndexValue(owner),
      ...(options.since ? { ":since": options.since } : {}),
      ...(options.status ? { ":status": options.status } : {}),
    },
    FilterExpression: options.status ? "#status = :status" : undefined,
    ScanIndexForward: false,
    // One more than asked for tells whether there is a next page.
    Limit: options.status ? 100 : options.limit + 1,
  };
  let start: Record<string, unknown> | undefined = options.after && {
    [OWNER_INDEX.partitionKey]: ownerIndexValue(owner),
    created_at: options.after.created_at,
    job_id: options.after.job_id,
  };
  const found: JobSummary[] = [];
  let reads = 0;
  do {
    const out = await db.send(new QueryCommand({ ...query, ExclusiveStartKey: start }));
    found.push(...(out.Items ?? []).map((item) => summarize(item as Job)));
    reads += out.ScannedCount ?? 0;
    start = out.LastEvaluatedKey;
  } while (start && found.length <= options.limit && reads < MAX_LISTING_READS);
  if (found.length > options.limit) {
    const jobs = found.slice(0, options.limit);
    const last = jobs.at(-1)!;
    return { jobs, next: { created_at: last.created_at, job_id: last.job_id } };
  }
  // Out of read budget before the page was full: the next page goes on from there.
  if (start) {
    return {
      jobs: found,
      next: { created_at: String(start.created_at), job_id: String(start.job_id) },
    };
  }
  return { jobs: found };
}
