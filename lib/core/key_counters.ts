/**
 * What the store keeps per API key for its limits and its usage, whichever
 * store backs it: a counter per key per window (requests and tokens), the set
 * of each key's waiting jobs and of its running jobs, and its usage per day.
 * Every change is atomic in the store, so the limits hold across front doors,
 * workers and restarts.
 *
 * The two sets name their jobs rather than count them, so nothing can leak:
 * a member whose job is no longer in the state the set counts (a worker that
 * died with it, a front door that stopped between two steps) is found stale
 * and dropped before a key is ever refused for a full set.
 */
import type { Job, JobApi } from "./jobs.ts";
import { isFinished } from "./store.ts";

/** A key's counts in one window. */
export interface WindowCounts {
  requests: number;
  tokens: number;
}

/** A window of the rate limits: it starts at `start` (epoch s) and lasts `seconds`. */
export interface LimitWindow {
  start: number;
  seconds: number;
}

/** The window a moment falls in. */
export function windowAt(nowMs: number, seconds: number): LimitWindow {
  const start = Math.floor(nowMs / 1000 / seconds) * seconds;
  return { start, seconds };
}

/** Caps a request is counted under: the window must hold fewer than each. */
export interface WindowCaps {
  requests?: number;
  tokens?: number;
}

/** What counting a request did, and the window's counts after (or, refused, as they stand). */
export interface CountResult {
  counted: boolean;
  counts: WindowCounts;
}

/** The sets of a key's jobs its limits count: not started yet, and running. */
export type SlotKind = "waiting" | "running";

/** What adding a member to a set did, and the members found there when it was full. */
export interface JoinResult {
  joined: boolean;
  members: string[];
}

/** What a job's record says about whether a set still counts it. */
export type JobState = Pick<Job, "job_id" | "status" | "attempts" | "lease_until">;

/** One day of a key's usage (UTC). */
export interface DayUsage {
  /** Jobs that ended (succeeded or failed for good). */
  jobs: number;
  /** Of those, the ones that failed. */
  failures: number;
  prompt_tokens: number;
  completion_tokens: number;
  /** Jobs by the API that made them. */
  apis: Partial<Record<JobApi, number>>;
}

/** What one ended job adds to its key's day. */
export interface UsageRecord {
  failed: boolean;
  prompt_tokens: number;
  completion_tokens: number;
  api: JobApi;
}

/** How long usage is kept: 90 days. */
export const USAGE_KEEP_DAYS = 90;

/** The per-key counters of a store. */
export interface KeyCounters {
  /**
   * Counts one request and its estimated tokens in the key's window, in one
   * atomic step, if the window holds fewer requests and fewer tokens than
   * `caps`; otherwise changes nothing.
   */
  countRequest(owner: string, window: LimitWindow, tokens: number, caps: WindowCaps): Promise<
    CountResult
  >;
  /** A key's counts in a window (zero when it has none). */
  windowCounts(owner: string, window: LimitWindow): Promise<WindowCounts>;
  /** Adds to a window's counts, or takes away with negative numbers: an undone request, a job's usage. */
  addToWindow(owner: string, window: LimitWindow, add: Partial<WindowCounts>): Promise<void>;
  /** Adds `member` to a key's set if it has fewer than `limit`; otherwise returns the members. */
  addMember(kind: SlotKind, owner: string, member: string, limit: number): Promise<JoinResult>;
  /** Takes members out of a key's set; those not in it are no matter. */
  removeMembers(kind: SlotKind, owner: string, members: readonly string[]): Promise<void>;
  /** The records of jobs, as far as the sets need them; a missing job is absent. */
  jobStates(jobIds: readonly string[]): Promise<Map<string, JobState>>;
  /**
   * Adds ended jobs (one, or several a worker summed) to their key's usage of
   * the day (`YYYY-MM-DD`), kept {@linkcode USAGE_KEEP_DAYS}, in one write.
   */
  recordUsage(owner: string, day: string, added: DayUsage): Promise<void>;
  /** The usage of each owner on each day that has any. */
  readUsage(
    owners: readonly string[],
    days: readonly string[],
  ): Promise<Map<string, Map<string, DayUsage>>>;
}

/** A set's member: the job, and when it joined (epoch ms), so a member of a job never written ages out. */
export function slotMember(jobId: string, sinceMs = Date.now()): string {
  return `${jobId}@${sinceMs}`;
}

function parseMember(member: string): { jobId: string; since: number } {
  const at = member.lastIndexOf("@");
  return { jobId: member.slice(0, at), since: Number(member.slice(at + 1)) || 0 };
}

/**
 * Whether a set no longer counts a member's job. A waiting member counts its
 * job until it first starts; a running member until it ends, or its lease
 * lapses (its worker stopped). Either counts a job not (or no longer) in the
 * store for `graceMs` after it joined: a front door writes the job just after,
 * and a worker starts it just after.
 */
export function isStale(
  kind: SlotKind,
  member: string,
  job: JobState | undefined,
  options: { now: number; graceMs: number },
): boolean {
  const { since } = parseMember(member);
  const young = since > options.now - options.graceMs;
  if (!job) return !young;
  if (kind === "waiting") return job.status !== "queued" || job.attempts > 0;
  if (isFinished(job as Job)) return true;
  if (job.status === "queued") return !young;
  return (job.lease_until ?? 0) < options.now;
}

/** Options for {@linkcode joinSet}. */
export interface JoinSetOptions {
  /** How long a member counts before its job need be in the state the set counts (see {@linkcode isStale}). */
  graceMs: number;
  now?: number;
}

/**
 * Adds a member to a key's set if the set has room. When it is full, its
 * members' jobs are read, the stale ones dropped, and the member added if
 * that made room: a key is only refused for jobs that really wait or run.
 */
export async function joinSet(
  counters: KeyCounters,
  kind: SlotKind,
  owner: string,
  member: string,
  limit: number,
  options: JoinSetOptions,
): Promise<JoinResult> {
  const first = await counters.addMember(kind, owner, member, limit);
  if (first.joined) return first;
  const now = options.now ?? Date.now();
  const jobs = await counters.jobStates(first.members.map((m) => parseMember(m).jobId));
  const stale = first.members.filter((m) =>
    isStale(kind, m, jobs.get(parseMember(m).jobId), { now, graceMs: options.graceMs })
  );
  if (stale.length === 0) return first;
  await counters.removeMembers(kind, owner, stale);
  return await counters.addMember(kind, owner, member, limit);
}

/** A UTC day as `YYYY-MM-DD`. */
export function dayOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** An empty day of usage. */
export function emptyDay(): DayUsage {
  return { jobs: 0, failures: 0, prompt_tokens: 0, completion_tokens: 0, apis: {} };
}

/** What one ended job adds to its key's day. */
export function usageOfJob(record: UsageRecord): DayUsage {
  return {
    jobs: 1,
    failures: record.failed ? 1 : 0,
    prompt_tokens: record.prompt_tokens,
    completion_tokens: record.completion_tokens,
    apis: { [record.api]: 1 },
  };
}

/** Two sums of usage added up. */
export function addUsage(day: DayUsage, added: DayUsage): DayUsage {
  const apis = { ...day.apis };
  for (const [api, jobs] of Object.entries(added.apis) as [JobApi, number][]) {
    apis[api] = (apis[api] ?? 0) + jobs;
  }
  return {
    jobs: day.jobs + added.jobs,
    failures: day.failures + added.failures,
    prompt_tokens: day.prompt_tokens + added.prompt_tokens,
    completion_tokens: day.completion_tokens + added.completion_tokens,
    apis,
  };
}
