/**
 * `GET /metrics` in Prometheus's text format: this instance's request counts,
 * the queue depths, and the counters each worker publishes with its heartbeat
 * (lib/core/metrics.ts). Queue depths and worker counters are read from the
 * queue and the store at each scrape, so every front-door instance serves the
 * same ones.
 */
import type { Handler } from "hono";
import { errorMessage } from "../core/error_message.ts";
import { type HistogramData, TIME_BUCKETS, type WorkerMetricsReport } from "../core/metrics.ts";
import { LANES, type QueueDepth } from "../core/queue.ts";
import type { GatewayEnv } from "./http_context.ts";
import type { RequestCounts } from "./request_metrics.ts";
import type { RouteDeps } from "./route_deps.ts";

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

/** `GET /metrics`: always 200; a source that cannot be read shows as `gateway_source_up 0`. */
export function getMetrics(
  { services, logger }: RouteDeps,
  requests: RequestCounts,
): Handler<GatewayEnv> {
  const { store, queue } = services;
  return async function handleGetMetrics(c) {
    const out = new Exposition();
    out.family(
      "gateway_http_requests_total",
      "counter",
      "Requests this front-door instance answered, by route and status (each instance counts its own).",
    );
    for (const { method, route, status, count } of requests.entries()) {
      out.sample("gateway_http_requests_total", { method, route, status: String(status) }, count);
    }
    out.family(
      "gateway_instance_start_time_seconds",
      "gauge",
      "When this front-door instance started counting requests.",
    ).sample("gateway_instance_start_time_seconds", {}, requests.since / 1000);

    const [depths, lastSeen, reports] = await Promise.all([
      settle(Promise.all(LANES.map((lane) => queue.depth(lane)))),
      settle(store.lastWorkerSeen()),
      settle(store.listWorkerMetrics()),
    ]);
    out.family("gateway_source_up", "gauge", "Whether this scrape could read the source.");
    for (const [source, result] of [["queue", depths], ["store", reports]] as const) {
      out.sample("gateway_source_up", { source }, result.ok ? 1 : 0);
      if (!result.ok) {
        logger.warn("Metrics source unreadable", { source, error: errorMessage(result.error) });
      }
    }
    if (depths.ok) queueDepths(out, depths.value);
    if (lastSeen.ok && lastSeen.value) {
      out.family(
        "gateway_worker_last_seen_timestamp_seconds",
        "gauge",
        "When any worker last wrote its heartbeat.",
      ).sample("gateway_worker_last_seen_timestamp_seconds", {}, lastSeen.value.getTime() / 1000);
    }
    if (reports.ok) workerCounters(out, reports.value);
    return c.body(out.text(), 200, { "content-type": CONTENT_TYPE });
  };
}

function queueDepths(out: Exposition, depths: QueueDepth[]): void {
  out.family(
    "gateway_queue_messages",
    "gauge",
    "Messages in each lane: waiting, in flight (or waiting out a retry delay), and in its dead-letter queue.",
  );
  LANES.forEach((lane, i) => {
    for (const state of ["waiting", "in_flight", "dead"] as const) {
      out.sample("gateway_queue_messages", { lane, state }, depths[i][state]);
    }
  });
}

/** Each worker's series carry its id, so a restarted worker is a new series, as Prometheus expects. */
function workerCounters(out: Exposition, reports: WorkerMetricsReport[]): void {
  const worker = (r: WorkerMetricsReport) => r.worker_id.slice(0, 8);
  out.family(
    "gateway_worker_report_timestamp_seconds",
    "gauge",
    "When each worker last published its counters (with its heartbeat).",
  );
  for (const r of reports) {
    out.sample(
      "gateway_worker_report_timestamp_seconds",
      { worker: worker(r) },
      seconds(r.seen_at),
    );
  }
  out.family("gateway_worker_start_time_seconds", "gauge", "When each worker started counting.");
  for (const r of reports) {
    out.sample("gateway_worker_start_time_seconds", { worker: worker(r) }, seconds(r.started_at));
  }
  out.family(
    "gateway_worker_job_runs_total",
    "counter",
    "Job deliveries each worker handled, by backend and how the run ended.",
  );
  for (const r of reports) {
    for (const [backend, outcomes] of Object.entries(r.runs)) {
      for (const [outcome, count] of Object.entries(outcomes)) {
        out.sample("gateway_worker_job_runs_total", { worker: worker(r), backend, outcome }, count);
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
    for (const r of reports) {
      for (const [backend, data] of Object.entries(r[field])) {
        out.histogram(name, { worker: worker(r), backend }, data);
      }
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
