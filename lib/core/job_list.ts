/**
 * Listing a key's recent jobs, newest first, a page at a time. Each store
 * keeps an index of job records by owner and creation time (a DynamoDB
 * global secondary index, or Deno KV keys), holding only the fields of a
 * {@linkcode JobSummary}: the index is not rewritten by the writes that come
 * often (a streamed reply's text, a lease renewal).
 */
import type { Job, JobStatus } from "./jobs.ts";

/** The owner index's value for jobs created without API keys (no owner). */
export const NO_OWNER = "-";

/** What a listing shows of a job: no message, reply, owner or internal field. */
export type JobSummary = Pick<
  Job,
  | "job_id"
  | "conversation_id"
  | "status"
  | "route"
  | "model"
  | "priority"
  | "attempts"
  | "created_at"
  | "updated_at"
  | "started_at"
  | "finished_at"
  | "error"
  | "mode"
  | "retries"
  | "retried_at"
>;

/** The fields of a {@linkcode JobSummary}, as the index projects them. */
export const SUMMARY_FIELDS = [
  "job_id",
  "conversation_id",
  "status",
  "route",
  "model",
  "priority",
  "attempts",
  "created_at",
  "updated_at",
  "started_at",
  "finished_at",
  "error",
  "mode",
  "retries",
  "retried_at",
] as const satisfies readonly (keyof JobSummary)[];

/** Where a page ends: the last job it holds. */
export interface JobCursor {
  created_at: string;
  job_id: string;
}

/** Options for `Store.listJobs`. */
export interface ListJobsOptions {
  /** At most this many jobs. */
  limit: number;
  /** Only jobs created before this one (the previous page's `next`). */
  after?: JobCursor;
  /** Only jobs created at or after this time (ISO 8601). */
  since?: string;
  /** Only jobs in this state. */
  status?: JobStatus;
}

/** One page of a listing. */
export interface JobPage {
  jobs: JobSummary[];
  /** Where the next page starts; absent on the last page. */
  next?: JobCursor;
}

/** The summary of a job record. */
export function summarize(job: Partial<Job>): JobSummary {
  const summary: Record<string, unknown> = {};
  for (const field of SUMMARY_FIELDS) {
    if (job[field] !== undefined) summary[field] = job[field];
  }
  return summary as JobSummary;
}

/** The owner index's value for a job's owner. */
export function ownerIndexValue(owner: string | undefined): string {
  return owner ?? NO_OWNER;
}

/** A cursor as a client sees it: opaque, URL-safe. */
export function encodeCursor(cursor: JobCursor): string {
  const bytes = new TextEncoder().encode(JSON.stringify([cursor.created_at, cursor.job_id]));
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_")
    .replace(/=+$/, "");
}

/** Reads a client's cursor; undefined when it is not one this gateway made. */
export function decodeCursor(text: string): JobCursor | undefined {
  try {
    const binary = atob(text.replaceAll("-", "+").replaceAll("_", "/"));
    const value = JSON.parse(
      new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0))),
    );
    if (
      Array.isArray(value) && value.length === 2 && typeof value[0] === "string" &&
      typeof value[1] === "string" && !Number.isNaN(Date.parse(value[0]))
    ) {
      return { created_at: value[0], job_id: value[1] };
    }
  } catch {
    // not base64 or not JSON: not ours
  }
  return undefined;
}
