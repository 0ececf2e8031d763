/**
 * `GET /metrics` in Prometheus's text format: this instance's request counts,
 * each backend's queue depths and state, and what each worker publishes in its
 * heartbeat record (when it was seen, what it serves, its counters: see
 * lib/core/metrics.ts). Queue depths and worker records are read from the
 * queue and the store at each scrape, so every front-door instance serves the
 * same ones.
 *
 * Those figures are everyone's, so who sees them is bounded: with admin keys
 * configured, only an admin key may scrape; with API keys but no admin keys,
 * a key sees its own figures only (its jobs of the last hour, by status);
 * without keys (a local gateway), everything is shown.
 */
import type { Context, Handler } from "hono";
import type { Backend } from "../core/backends.ts";
import type { WorkerRecord } from "../core/catalogue.ts";
import { hasAdminKeys, hasApiKeys } from "../core/config.ts";
import { errorMessage } from "../core/error_message.ts";
import type { JobStatus } from "../core/jobs.ts";
import { adminKeyCheck, bearerKeyOf } from "./auth.ts";
import { ApiError } from "./errors.ts";
import { type HistogramData, type KeyCounts, NO_OWNER, TIME_BUCKETS } from "../core/metrics.ts";
import { keyOf, type KeySpec } from "../core/key_config.ts";
import { NO_KEY_NAME } from "./usage_route.ts";
import { type QueueDepth, type QueueRef, queuesOf } from "../core/queue.ts";
import type { GatewayEnv } from "./http_context.ts";
import { ModelDirectory } from "./model_directory.ts";
import type { RequestCounts } from "./request_metrics.ts";
import type { RouteDeps } from "./route_deps.ts";
import { BACKEND_STATES, backendState } from "./worker_status.ts";

/** Prometheus's text exposition format. */
const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

type Labels = Record<string, string>;

/** Builds the text of one scrape, a metric family at a time. */
class Exposition {
  #lines: string[] = [];

  family(name: string, type: "counter" | "gauge" | "histogram", help: string): this {
    this.#lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    return this;
  }

  sample(name: string, labels: Labels, value: number): this {
    const pairs = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
    this.#lines.push(`${name}${pairs.length > 0 ? `{${pairs.join(",")}}` : ""} ${value}`);
    return this;
  }

  histogram(name: string, labels: Labels, data: HistogramData): this {
    let cumulative = 0;
    TIME_BUCKETS.forEach((bound, i) => {
      cumulative += data.counts[i] ?? 0;
      this.sample(`${name}_bucket`, { ...labels, le: String(bound) }, cumulative);
    });
    this.sample(`${name}_bucket`, { ...labels, le: "+Inf" }, data.count);
    this.sample(`${name}_sum`, labels, round(data.sum));
    return this.sample(`${name}_count`, labels, data.count);
  }

  text(): string {
    return this.#lines.join("\n") + "\n";
  }
}

/** Who sees what of `GET /metrics`: everything, or the caller's own figures. */
type MetricsScope = "all" | "own";

/**
 * `GET /metrics`: always 200 to a caller who may scrape; a source that cannot
 * be read shows as `gateway_source_up 0`.
 */
export function getMetrics(
  { services, logger }: RouteDeps,
  requests: RequestCounts,
): Handler<GatewayEnv> {
  const { config } = services;
  const isAdmin = adminKeyCheck({ keys: config.adminKeys, digests: config.adminKeyDigests });
  /** The scope of a request, or a 403 for a key that may not scrape. */
  const scopeOf = async (c: Context<GatewayEnv>): Promise<MetricsScope> => {
    if (hasAdminKeys(config)) {
      const key = bearerKeyOf(c.req.header("authorization"));
      if (key !== undefined && await isAdmin(key)) return "all";
      throw new ApiError(
        403,
        "Forbidden: /metrics shows every key's figures, so only an admin key (GATEWAY_ADMIN_KEYS) may read it; a key's own jobs are at GET /v1/jobs/stats",
        { code: "not_admin", type: "permission_error" },
      );
    }
    return hasApiKeys(config) ? "own" : "all";
  };
  return async function handleGetMetrics(c) {
    const scope = await scopeOf(c);
    if (scope === "own") {
      const text = await ownFigures(services, c.get("owner"));
      return c.body(text, 200, { "content-type": CONTENT_TYPE });
    }
    const out = new Exposition();
    out.family(
      "gateway_http_requests_total",
      "counter",
      "Requests this front-door instance answered, by route and status (each instance counts its own).",
    );
    for (const { method, route, status, count } of requests.entries()) {
      out.sample("gateway_http_requests_total", { method, route, status }, count);
    }
    out.family(
      "gateway_instance_start_time_seconds",
      "gauge",
      "When this front-door instance started counting requests.",
    ).sample("gateway_instance_start_time_seconds", {}, requests.since / 1000);

    const queues = queuesOf(services.backends.map((b) => b.name));
    const [depths, workers] = await Promise.all([
      settle(Promise.all(queues.map((queue) => services.queue.depth(queue)))),
      settle(services.store.listWorkers()),
    ]);
    out.family("gateway_source_up", "gauge", "Whether this scrape could read the source.");
    for (const [source, result] of [["queue", depths], ["store", workers]] as const) {
      out.sample("gateway_source_up", { source }, result.ok ? 1 : 0);
      if (!result.ok) {
        logger.warn("Metrics source unreadable", { source, error: errorMessage(result.error) });
      }
    }
    if (depths.ok) queueDepths(out, queues, depths.value);
    if (workers.ok) {
      backendStates(out, services.backends, new ModelDirectory(services.backends, workers.value));
      workerSeries(out, workers.value);
      keySeries(out, workers.value, config.keys);
    }
    keyLimits(out, config.keys);
    return c.body(out.text(), 200, { "content-type": CONTENT_TYPE });
  };
}

/** The jobs of the last hour read at most for a key's own figures; past it they say `truncated`. */
const MAX_OWN_JOBS = 2000;
const JOB_STATUSES: readonly JobStatus[] = ["queued", "running", "succeeded", "failed", "canceled"];

/** What a key sees when it may not see everyone's figures: its own jobs of the last hour. */
async function ownFigures(services: RouteDeps["services"], owner: string | undefined) {
  const since = new Date(Date.now() - 3600_000).toISOString();
  const page = await services.store.listJobs(owner, { limit: MAX_OWN_JOBS, since });
  const out = new Exposition().family(
    "gateway_key_jobs",
    "gauge",
    `The caller's jobs created in the last hour, by status (at most ${MAX_OWN_JOBS} counted). Only an admin key sees every key's figures, once GATEWAY_ADMIN_KEYS is set.`,
  );
  for (const status of JOB_STATUSES) {
    out.sample(
      "gateway_key_jobs",
      { status },
      page.jobs.filter((job) => job.status === status).length,
    );
  }
  return out.family(
    "gateway_key_jobs_truncated",
    "gauge",
    `1 when the caller made more than ${MAX_OWN_JOBS} jobs in the last hour, and only that many were counted.`,
  ).sample("gateway_key_jobs_truncated", {}, page.next ? 1 : 0).text();
}

function queueDepths(out: Exposition, queues: QueueRef[], depths: QueueDepth[]): void {
  out.family(
    "gateway_queue_messages",
    "gauge",
    "Messages in each backend's lanes: waiting, in flight (or waiting out a retry delay), and in the lane's dead-letter queue.",
  );
  queues.forEach(({ backend, lane }, i) => {
    for (const state of ["waiting", "in_flight", "dead"] as const) {
      out.sample("gateway_queue_messages", { backend, lane, state }, depths[i][state]);
    }
  });
}

/** Each backend's state as its live workers report it, and how many live workers serve it. */
function backendStates(out: Exposition, backends: readonly Backend[], directory: ModelDirectory) {
  out.family(
    "gateway_backend_state",
    "gauge",
    "1 for each backend's current state: up, down (its live workers cannot reach it) or no_worker.",
  );
  for (const backend of backends) {
    const { status } = backendState(backend, directory);
    for (const state of BACKEND_STATES) {
      out.sample(
        "gateway_backend_state",
        { backend: backend.name, state },
        state === status ? 1 : 0,
      );
    }
  }
  out.family("gateway_backend_live_workers", "gauge", "Live workers serving each backend.");
  for (const backend of backends) {
    out.sample(
      "gateway_backend_live_workers",
      { backend: backend.name },
      directory.liveWorkersOf(backend).length,
    );
  }
}

/**
 * When each worker was last seen, per backend it serves, and its counters.
 * Each worker's series carry its id, so a restarted worker is a new series,
 * as Prometheus expects; records are kept a day.
 */
function workerSeries(out: Exposition, records: WorkerRecord[]): void {
  const worker = (r: WorkerRecord) => r.worker_id.slice(0, 8);
  out.family(
    "gateway_worker_last_seen_timestamp_seconds",
    "gauge",
    "When each worker last wrote its heartbeat, for each backend it serves.",
  );
  for (const r of records) {
    for (const { name } of r.backends) {
      out.sample(
        "gateway_worker_last_seen_timestamp_seconds",
        { worker: worker(r), backend: name },
        seconds(r.seen_at),
      );
    }
  }
  const counted = records.flatMap((r) => r.counters ? [{ r, counters: r.counters }] : []);
  out.family("gateway_worker_start_time_seconds", "gauge", "When each worker started counting.");
  for (const { r, counters } of counted) {
    out.sample(
      "gateway_worker_start_time_seconds",
      { worker: worker(r) },
      seconds(counters.started_at),
    );
  }
  out.family(
    "gateway_worker_job_runs_total",
    "counter",
    "Job deliveries each worker handled, by backend and how the run ended.",
  );
  for (const { r, counters } of counted) {
    for (const [backend, outcomes] of Object.entries(counters.runs)) {
      for (const [outcome, count] of Object.entries(outcomes)) {
        out.sample("gateway_worker_job_runs_total", { worker: worker(r), backend, outcome }, count);
      }
    }
  }
  out.family(
    "gateway_worker_api_runs_total",
    "counter",
    "Runs that started a job, by worker, the API that made the job (chat, chat.completions, responses, messages, embeddings; unknown for jobs older than the field) and how the run ended.",
  );
  for (const { r, counters } of counted) {
    for (const [api, outcomes] of Object.entries(counters.api_runs ?? {})) {
      for (const [outcome, count] of Object.entries(outcomes)) {
        out.sample("gateway_worker_api_runs_total", { worker: worker(r), api, outcome }, count);
      }
    }
  }
  const histograms = [
    [
      "gateway_job_wait_seconds",
      "wait_seconds",
      "From a job being queued (or sent back) to its first start.",
    ],
    ["gateway_job_run_seconds", "run_seconds", "Each run of a job, from its start to its end."],
  ] as const;
  for (const [name, field, help] of histograms) {
    out.family(name, "histogram", `${help} By worker and backend.`);
    for (const { r, counters } of counted) {
      for (const [backend, data] of Object.entries(counters[field])) {
        out.histogram(name, { worker: worker(r), backend }, data);
      }
    }
  }
}

/**
 * Each key's jobs and tokens as each worker counted them, labelled with the
 * key's name: the configured keys, `anonymous` without keys, and `other` for
 * a key no longer configured, so the series stay as few as the keys.
 */
function keySeries(out: Exposition, records: WorkerRecord[], keys: readonly KeySpec[]): void {
  const jobs: [Labels, number][] = [];
  const tokens: [Labels, number][] = [];
  for (const r of records) {
    const worker = r.worker_id.slice(0, 8);
    const byName = new Map<string, KeyCounts>();
    for (const [owner, counts] of Object.entries(r.counters?.keys ?? {})) {
      const name = keyOf(keys, owner)?.name ?? (owner === NO_OWNER ? NO_KEY_NAME : "other");
      const sum = byName.get(name) ??
        { succeeded: 0, failed: 0, prompt_tokens: 0, completion_tokens: 0 };
      for (const field of Object.keys(sum) as (keyof KeyCounts)[]) sum[field] += counts[field];
      byName.set(name, sum);
    }
    for (const [key, counts] of byName) {
      jobs.push([{ worker, key, outcome: "succeeded" }, counts.succeeded]);
      jobs.push([{ worker, key, outcome: "failed" }, counts.failed]);
      tokens.push([{ worker, key, kind: "prompt" }, counts.prompt_tokens]);
      tokens.push([{ worker, key, kind: "completion" }, counts.completion_tokens]);
    }
  }
  out.family(
    "gateway_key_jobs_ended_total",
    "counter",
    "Jobs of each key (by name) that ended on each worker: succeeded, or failed for good.",
  );
  for (const [labels, value] of jobs) out.sample("gateway_key_jobs_ended_total", labels, value);
  out.family(
    "gateway_key_tokens_total",
    "counter",
    "Tokens of each key's succeeded jobs on each worker, as the backends reported them.",
  );
  for (const [labels, value] of tokens) out.sample("gateway_key_tokens_total", labels, value);
}

/** Each key's configured limits (GATEWAY_KEY_LIMITS), for dashboards to draw beside its use. */
function keyLimits(out: Exposition, keys: readonly KeySpec[]): void {
  out.family(
    "gateway_key_limit",
    "gauge",
    "Each key's limits: rpm and tpm per LIMIT_WINDOW_S, in_flight and waiting jobs.",
  );
  for (const key of keys) {
    for (const [limit, value] of Object.entries(key.limits)) {
      out.sample("gateway_key_limit", { key: key.name, limit }, value);
    }
  }
}

type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

function settle<T>(promise: Promise<T>): Promise<Settled<T>> {
  return promise.then((value) => ({ ok: true, value }), (error) => ({ ok: false, error }));
}

function seconds(iso: string): number {
  return Date.parse(iso) / 1000;
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}

/** Label values escape backslash, double quote and newline. */
function escapeLabel(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}
