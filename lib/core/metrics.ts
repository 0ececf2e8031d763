/**
 * The worker's counters, as it publishes them in its heartbeat record (see
 * lib/core/catalogue.ts): it has no open port, so the front door reads them
 * from the store and serves them on `GET /metrics`. Each worker counts from
 * its own start; the front door labels every series with the worker, so a
 * restart is a new series and Prometheus's `rate()` and `sum()` stay right.
 */

/** Upper bounds, in seconds, of the buckets of the job time histograms. */
export const TIME_BUCKETS: readonly number[] = [
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
  120,
  300,
  900,
  3600,
];

/** A histogram over {@linkcode TIME_BUCKETS}. */
export interface HistogramData {
  /** Observations per bucket (not cumulative); the last counts those above every bound. */
  counts: number[];
  sum: number;
  count: number;
}

/** What one worker has counted since it started. */
export interface WorkerCounters {
  /** When the worker started counting (ISO 8601). */
  started_at: string;
  /** Job runs by backend, then by how the run ended ("succeeded", "failed", "retrying", …). */
  runs: Record<string, Record<string, number>>;
  /** By backend: from a job being queued (or sent back) to its first start. */
  wait_seconds: Record<string, HistogramData>;
  /** By backend: each run that reached the backend, from its start to its end. */
  run_seconds: Record<string, HistogramData>;
  /**
   * Runs that started a job, by the API that made it (see `JobApi`, or
   * "unknown" for jobs made before jobs recorded it), then by how the run
   * ended. Absent in the records of workers older than it.
   */
  api_runs?: Record<string, Record<string, number>>;
  /**
   * By owner id (a key, never the key itself; {@linkcode NO_OWNER} without
   * keys): its jobs that ended on this worker and their tokens. The front door
   * shows them by the key's name. Absent in the records of workers older than it.
   */
  keys?: Record<string, KeyCounts>;
}

/** The owner of jobs made without keys in {@linkcode WorkerCounters}: DynamoDB allows no empty map key. */
export const NO_OWNER = "-";

/** What one key's jobs came to on one worker. */
export interface KeyCounts {
  succeeded: number;
  failed: number;
  prompt_tokens: number;
  completion_tokens: number;
}

/** An empty histogram. */
export function emptyHistogram(): HistogramData {
  return { counts: new Array(TIME_BUCKETS.length + 1).fill(0), sum: 0, count: 0 };
}

/**
 * Adds one observation, in seconds, to a histogram. A value that is not a
 * finite number is left out: the histogram travels in the worker's heartbeat
 * record, and DynamoDB refuses to store NaN or Infinity.
 */
export function observe(histogram: HistogramData, seconds: number): void {
  if (!Number.isFinite(seconds)) return;
  const value = Math.max(0, seconds);
  const bucket = TIME_BUCKETS.findIndex((bound) => value <= bound);
  histogram.counts[bucket < 0 ? TIME_BUCKETS.length : bucket]++;
  histogram.sum += value;
  histogram.count++;
}
