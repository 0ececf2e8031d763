/** The worker's counters: what became of each job run, and how long jobs waited and ran. */
import { type Job, JOB_APIS } from "../core/jobs.ts";
import {
  emptyHistogram,
  type HistogramData,
  observe,
  type WorkerCounters,
} from "../core/metrics.ts";

/** The label of runs of messages that name no backend (line checks, unreadable messages). */
const NO_BACKEND = "none";
/** The API label of jobs made before jobs recorded their API. */
const UNKNOWN_API = "unknown";

/** Counts runs by backend and outcome and times them, for publishing with the heartbeat. */
export class WorkerMetrics {
  #counters: WorkerCounters;

  constructor(now = new Date()) {
    this.#counters = {
      started_at: now.toISOString(),
      runs: {},
      wait_seconds: {},
      run_seconds: {},
      api_runs: {},
    };
  }

  /** Counts how one delivery's run ended. */
  countRun(route: string, outcome: string): void {
    const byOutcome = this.#counters.runs[route || NO_BACKEND] ??= {};
    byOutcome[outcome] = (byOutcome[outcome] ?? 0) + 1;
  }

  /**
   * Times a run that started the job. Its first run also says how long it
   * waited: from being queued (or sent back to run) to that start.
   */
  timeRun(run: { job: Job; ms: number }): void {
    const { job } = run;
    observe(histogram(this.#counters.run_seconds, job.route), run.ms / 1000);
    if (job.attempts === 1 && job.started_at) {
      const queuedAt = Date.parse(job.retried_at ?? job.created_at);
      const waited = (Date.parse(job.started_at) - queuedAt) / 1000;
      if (Number.isFinite(waited)) {
        observe(histogram(this.#counters.wait_seconds, job.route), waited);
      }
    }
  }

  /** Times a run that started the job, and counts how it ended by the API that made the job. */
  endRun(run: { job: Job; outcome: string; ms: number }): void {
    this.timeRun(run);
    // Only the known names: a label's values stay few whatever a record holds.
    const api = JOB_APIS.includes(run.job.api!) ? run.job.api! : UNKNOWN_API;
    const byOutcome = this.#counters.api_runs![api] ??= {};
    byOutcome[run.outcome] = (byOutcome[run.outcome] ?? 0) + 1;
  }

  /** A copy of the counters as of now, ready to publish in the worker's record. */
  snapshot(): WorkerCounters {
    return structuredClone(this.#counters);
  }
}

function histogram(byRoute: Record<string, HistogramData>, route: string): HistogramData {
  return byRoute[route || NO_BACKEND] ??= emptyHistogram();
}
