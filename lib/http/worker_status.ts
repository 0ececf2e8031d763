/** Whether workers are alive and what they serve, as the front door can tell from their records in the store. */
import type { Backend } from "../core/backends.ts";
import { errorMessage } from "../core/error_message.ts";
import type { Config } from "../core/config.ts";
import { type Lane, LANES, type QueueDepth } from "../core/queue.ts";
import type { Services } from "../core/services.ts";
import { ApiError } from "./errors.ts";
import { ModelDirectory } from "./model_directory.ts";

/** When workers were last seen, and whether that is too long ago. */
export interface Seen {
  last_seen: string | null;
  seconds_ago: number | null;
  /** No worker seen for `WORKER_STALE_S`: `POST /chat` answers 503. */
  stale: boolean;
}

/** What a backend's live workers last found it: "up", "down", or "no_worker" when none is live. */
export type BackendState = "up" | "down" | "no_worker";

/** Every {@linkcode BackendState}, in the order `GET /metrics` lists them. */
export const BACKEND_STATES: readonly BackendState[] = ["up", "down", "no_worker"];

/** One backend in `GET /healthz`. */
export interface BackendHealth extends Seen {
  /** "up" or "down" as its live workers last found it; "no_worker" when none is live. */
  status: BackendState;
  /** Why it is down, as a worker reported it. */
  error?: string;
  queues: Record<Lane, QueueDepth>;
  /** The live workers that serve it. */
  workers: { worker_id: string; last_seen: string; seconds_ago: number }[];
  /** The models it serves, as its live workers last found them. */
  models: string[];
}

/** What `GET /healthz` reports. */
export interface Health {
  status: "ok" | "degraded";
  backend: string;
  /** Every backend's queues added up, by lane. */
  queues?: Record<Lane, QueueDepth>;
  /** Any worker, whatever it serves. */
  worker: Seen;
  backends?: Record<string, BackendHealth>;
  error?: string;
}

/** Whole seconds since a worker was last seen, or null when none ever was. */
export function secondsSinceSeen(seen: Date | undefined, now = Date.now()): number | null {
  return seen ? Math.max(0, Math.round((now - seen.getTime()) / 1000)) : null;
}

/** Each backend's queues, workers and models, and when any worker was last seen; never throws. */
export async function health(services: Services): Promise<Health> {
  const { queue, config, backends } = services;
  try {
    const [directory, depths] = await Promise.all([
      ModelDirectory.read(services),
      Promise.all(
        backends.map((b) =>
          Promise.all(LANES.map((lane) => queue.depth({ backend: b.name, lane })))
        ),
      ),
    ]);
    const now = Date.now();
    const perBackend = Object.fromEntries(backends.map((backend, i) => {
      const queues = Object.fromEntries(LANES.map((lane, j) => [lane, depths[i][j]])) as Record<
        Lane,
        QueueDepth
      >;
      return [backend.name, backendHealth(backend, directory, queues, config, now)];
    }));
    return {
      status: "ok",
      backend: config.backend,
      queues: Object.fromEntries(
        LANES.map((lane, j) => [lane, sumDepths(depths.map((d) => d[j]))]),
      ) as Record<Lane, QueueDepth>,
      worker: seen(directory.lastSeen(), config, now),
      backends: perBackend,
    };
  } catch (err) {
    return {
      status: "degraded",
      backend: config.backend,
      worker: { last_seen: null, seconds_ago: null, stale: true },
      error: `Cannot read queue or worker state: ${errorMessage(err)}`,
    };
  }
}

function backendHealth(
  backend: Backend,
  directory: ModelDirectory,
  queues: Record<Lane, QueueDepth>,
  config: Config,
  now: number,
): BackendHealth {
  return {
    ...backendState(backend, directory),
    ...seen(directory.lastSeen(backend), config, now),
    queues,
    workers: directory.liveWorkersOf(backend).map((w) => ({
      worker_id: w.worker_id,
      last_seen: w.seen_at,
      seconds_ago: secondsSinceSeen(new Date(w.seen_at), now) ?? 0,
    })),
    models: directory.liveModelsOf(backend).map((m) => m.id),
  };
}

/** A backend's state as its live workers report it: up if any finds it up; why it is down. */
export function backendState(
  backend: Backend,
  directory: ModelDirectory,
): { status: BackendState; error?: string } {
  const reports = directory.liveReportsOf(backend);
  const up = reports.some((r) => r.status === "up");
  const status = reports.length === 0 ? "no_worker" : up ? "up" : "down";
  return { status, ...(status === "down" && reports[0].error ? { error: reports[0].error } : {}) };
}

/**
 * Throws a 503 naming the backend when none of its workers has been seen for
 * `WORKER_STALE_S`: its jobs would only wait.
 */
export function ensureWorkerAlive(
  backend: Backend,
  { directory, config }: { directory: ModelDirectory; config: Config },
): void {
  const { stale, seconds_ago } = seen(directory.lastSeen(backend), config);
  if (!stale) return;
  const start = `start \`deno task worker\` where backend "${backend.name}" runs`;
  throw new ApiError(
    503,
    seconds_ago !== null
      ? `No worker available for backend "${backend.name}": its last worker was seen ${seconds_ago} s ago (WORKER_STALE_S is ${config.workerStaleSeconds}); ${start}`
      : `No worker available for backend "${backend.name}": none has ever been seen; ${start}`,
    { code: "no_worker", type: "service_unavailable" },
  );
}

function seen(last: Date | undefined, config: Config, now = Date.now()): Seen {
  const secondsAgo = secondsSinceSeen(last, now);
  return {
    last_seen: last?.toISOString() ?? null,
    seconds_ago: secondsAgo,
    stale: config.workerStaleSeconds > 0 &&
      (secondsAgo === null || secondsAgo > config.workerStaleSeconds),
  };
}

function sumDepths(depths: readonly QueueDepth[]): QueueDepth {
  return depths.reduce(
    (sum, d) => ({
      waiting: sum.waiting + d.waiting,
      in_flight: sum.in_flight + d.in_flight,
      dead: sum.dead + d.dead,
    }),
    { waiting: 0, in_flight: 0, dead: 0 },
  );
}
