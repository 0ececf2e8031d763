/** An owner's jobs from the embedded store's index, newest first, a page at a time. */
import {
  type JobPage,
  type JobSummary,
  type ListJobsOptions,
  ownerIndexValue,
  summarize,
} from "../../core/job_list.ts";
import type { Job } from "../../core/jobs.ts";

/** Job records read per listing at most, so a page of a rare status costs a bounded amount. */
const MAX_LISTING_READS = 2000;

export const jobKey = (id: string): Deno.KvKey => ["job", id];
/** The owner index: `["job_by_owner", owner, created_at, job_id]` holds the job id. */
const ownerIndexPrefix = (owner: string | undefined): Deno.KvKey => [
  "job_by_owner",
  ownerIndexValue(owner),
];
/** A job's entry in the owner index. */
export const ownerIndexKey = (job: Job): Deno.KvKey => [
  ...ownerIndexPrefix(job.owner),
  job.created_at,
  job.job_id,
];

/** The cursor of an owner index key (`[…prefix, created_at, job_id]`). */
function cursorOfKey(key: Deno.KvKey): { created_at: string; job_id: string } {
  return { created_at: String(key.at(-2)), job_id: String(key.at(-1)) };
}

/** A page of `owner`'s jobs, read through the owner index. */
export async function listOwnerJobs(
  kv: Deno.Kv,
  owner: string | undefined,
  options: ListJobsOptions,
): Promise<JobPage> {
  const prefix = ownerIndexPrefix(owner);
  const start = options.since ? [...prefix, options.since] : undefined;
  const end = options.after
    ? [...prefix, options.after.created_at, options.after.job_id]
    : undefined;
  const selector = start && end
    ? { start, end }
    : start
    ? { prefix, start }
    : end
    ? { prefix, end }
    : { prefix };
  const found: JobSummary[] = [];
  let batch: Deno.KvEntry<string>[] = [];
  let reads = 0;
  let lastRead: Deno.KvKey | undefined;
  const readBatch = async () => {
    const entries = await kv.getMany<Job[]>(batch.map((entry) => jobKey(entry.value)));
    for (const { value } of entries) {
      if (value && (!options.status || value.status === options.status)) {
        found.push(summarize(value));
      }
    }
    lastRead = batch.at(-1)?.key ?? lastRead;
    batch = [];
  };
  const iterator = kv.list<string>(selector, { reverse: true, batchSize: 100 });
  for await (const entry of iterator) {
    batch.push(entry);
    reads++;
    if (batch.length === 10) await readBatch();
    // One more than asked for tells whether there is a next page.
    if (found.length > options.limit || reads >= MAX_LISTING_READS) break;
  }
  if (batch.length > 0) await readBatch();
  if (found.length > options.limit) {
    const jobs = found.slice(0, options.limit);
    const last = jobs.at(-1)!;
    return { jobs, next: { created_at: last.created_at, job_id: last.job_id } };
  }
  // Out of read budget before the page was full: the next page goes on from there.
  if (reads >= MAX_LISTING_READS && lastRead) return { jobs: found, next: cursorOfKey(lastRead) };
  return { jobs: found };
}
