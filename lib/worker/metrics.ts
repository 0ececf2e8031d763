/** The worker's counters: what became of each job run, and how long jobs waited and ran. */
import { type Job, JOB_APIS } from "../core/jobs.ts";
import type { Usage } from "../core/messages.ts";
import {
  emptyHistogram,
  type HistogramData,
  NO_OWNER,
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

  /**
   * A run that started its job has ended: it is timed, counted by the API that
   * made the job, and a job that ended with it (its reply stored by this run,
   * or given up) counts for its key.
   */
  runEnded(run: { job: Job; ms: number; outcome: string; usage?: Usage }): void {
    this.timeRun(run);
    // Only the known names: a label's values stay few whatever a record holds.
    const api = JOB_APIS.includes(run.job.api!) ? run.job.api! : UNKNOWN_API;
    const byOutcome = this.#counters.api_runs![api] ??= {};
    byOutcome[run.outcome] = (byOutcome[run.outcome] ?? 0) + 1;
    const ended = run.outcome === "failed" || (run.outcome === "succeeded" && run.usage);
    if (!ended) return;
    const keys = this.#counters.keys ??= {};
    const counts = keys[run.job.owner || NO_OWNER] ??= {
      succeeded: 0,
      failed: 0,
      prompt_tokens: 0,
      completion_tokens: 0,
    };
    if (run.outcome === "failed") counts.failed++;
    else counts.succeeded++;
    counts.prompt_tokens += run.usage?.prompt_tokens ?? 0;
    counts.completion_tokens += run.usage?.completion_tokens ?? 0;
  }

  /** A copy of the counters as of now, ready to publish in the worker's record. */
  snapshot(): WorkerCounters {
    return structuredClone(this.#counters);
  }
}

function histogram(byRoute: Record<string, HistogramData>, route: string): HistogramData {
  return byRoute[route || NO_BACKEND] ??= emptyHistogram();
}
