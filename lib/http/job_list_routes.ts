/** `GET /v1/jobs` (the caller's recent jobs, a page at a time) and `GET /v1/jobs/stats` (the last hour). */
import type { Handler } from "hono";
import {
  decodeCursor,
  encodeCursor,
  type JobCursor,
  type JobSummary,
  type ListJobsOptions,
} from "../core/job_list.ts";
import type { JobStatus } from "../core/jobs.ts";
import { clientConversationId } from "../core/owners.ts";
import { type FieldProblem, invalidRequest } from "./errors.ts";
import type { GatewayEnv } from "./http_context.ts";
import type { RouteDeps } from "./route_deps.ts";

const STATUSES: readonly JobStatus[] = ["queued", "running", "succeeded", "failed", "canceled"];
const DEFAULT_LIMIT = 20;
const MAX_LIMIT = 100;
/** Jobs read for the statistics at most; past it the answer says `truncated`. */
const MAX_STATS_JOBS = 2000;

/** A job as `GET /v1/jobs` lists it: its summary, and how long it waited and ran. */
export type JobListEntry = JobSummary & {
  /** From being queued (or sent back to run) to its latest start. */
  wait_ms?: number;
  /** From its latest start to its end. */
  run_ms?: number;
};

/** `GET /v1/jobs?limit=&cursor=&status=`: the caller's jobs, newest first. */
export function listJobs({ services }: RouteDeps): Handler<GatewayEnv> {
  return async function handleListJobs(c) {
    const owner = c.get("owner");
    // Every bad parameter is named in one answer, not the first of them only.
    const problems: FieldProblem[] = [];
    const options: ListJobsOptions = {
      limit: parseLimit(c.req.query("limit"), problems),
      after: parseCursor(c.req.query("cursor"), problems),
      status: parseStatus(c.req.query("status"), problems),
    };
    if (problems.length > 0) throw invalidRequest(problems);
    const page = await services.store.listJobs(owner, options);
    return c.json({
      object: "list",
      data: page.jobs.map((job) => listEntry(job, owner)),
      next_cursor: page.next ? encodeCursor(page.next) : null,
      has_more: page.next !== undefined,
    });
  };
}

/** One minute of the statistics. */
export interface MinuteStats {
  /** The minute's start (ISO 8601). */
  start: string;
  /** Jobs created in that minute. */
  jobs: number;
  succeeded: number;
  failed: number;
  /** Median wait and run of those jobs that started (ran), or null. */
  wait_p50_ms: number | null;
  run_p50_ms: number | null;
}

/** `GET /v1/jobs/stats?minutes=60`: per minute, the caller's jobs and their median wait and run. */
export function jobStats({ services }: RouteDeps): Handler<GatewayEnv> {
  return async function handleJobStats(c) {
    const minutes = parseMinutes(c.req.query("minutes"));
    const firstMinute = Math.floor(Date.now() / 60_000) - minutes + 1;
    const since = new Date(firstMinute * 60_000).toISOString();
    const page = await services.store.listJobs(c.get("owner"), {
      limit: MAX_STATS_JOBS,
      since,
    });
    const buckets = Array.from({ length: minutes }, () => [] as JobListEntry[]);
    for (const job of page.jobs) {
      const index = Math.floor(Date.parse(job.created_at) / 60_000) - firstMinute;
      if (index >= 0 && index < minutes) buckets[index].push(withTimes(job));
    }
    return c.json({
      since,
      minutes,
      truncated: page.next !== undefined,
      buckets: buckets.map((jobs, i): MinuteStats => ({
        start: new Date((firstMinute + i) * 60_000).toISOString(),
        jobs: jobs.length,
        succeeded: jobs.filter((j) => j.status === "succeeded").length,
        failed: jobs.filter((j) => j.status === "failed").length,
        wait_p50_ms: median(jobs.map((j) => j.wait_ms)),
        run_p50_ms: median(jobs.map((j) => j.run_ms)),
      })),
    });
  };
}

function listEntry(job: JobSummary, owner: string | undefined): JobListEntry {
  return withTimes({ ...job, conversation_id: clientConversationId(owner, job.conversation_id) });
}

function withTimes(job: JobSummary): JobListEntry {
  const entry: JobListEntry = { ...job };
  const queued = Date.parse(job.retried_at ?? job.created_at);
  const started = job.started_at ? Date.parse(job.started_at) : NaN;
  const finished = job.finished_at ? Date.parse(job.finished_at) : NaN;
  if (Number.isFinite(started)) entry.wait_ms = Math.max(0, started - queued);
  if (Number.isFinite(started) && Number.isFinite(finished)) {
    entry.run_ms = Math.max(0, finished - started);
  }
  return entry;
}

/** The median of the defined values, or null when there are none. */
export function median(values: readonly (number | undefined)[]): number | null {
  const sorted = values.filter((v): v is number => v !== undefined).sort((a, b) => a - b);
  if (sorted.length === 0) return null;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? sorted[middle]
    : Math.round((sorted[middle - 1] + sorted[middle]) / 2);
}

/** Each parser below adds what is wrong with its parameter to `problems`, and answers a default. */
function parseLimit(value: string | undefined, problems: FieldProblem[]): number {
  if (value === undefined || value === "") return DEFAULT_LIMIT;
  const limit = Number(value);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
    problems.push({ param: "limit", message: `must be a whole number from 1 to ${MAX_LIMIT}` });
    return DEFAULT_LIMIT;
  }
  return limit;
}

function parseCursor(value: string | undefined, problems: FieldProblem[]): JobCursor | undefined {
  if (value === undefined || value === "") return undefined;
  const cursor = decodeCursor(value);
  if (!cursor) {
    problems.push({
      param: "cursor",
      message: "is not a cursor this gateway gave out: pass next_cursor from the previous page",
    });
  }
  return cursor;
}

function parseStatus(value: string | undefined, problems: FieldProblem[]): JobStatus | undefined {
  if (value === undefined || value === "") return undefined;
  if (!(STATUSES as readonly string[]).includes(value)) {
    problems.push({ param: "status", message: `must be one of ${STATUSES.join(", ")}` });
    return undefined;
  }
  return value as JobStatus;
}

function parseMinutes(value: string | undefined): number {
  if (value === undefined || value === "") return 60;
  const minutes = Number(value);
  if (!Number.isInteger(minutes) || minutes < 1 || minutes > 1440) {
    throw invalidRequest([{ param: "minutes", message: "must be a whole number from 1 to 1440" }]);
  }
  return minutes;
}
