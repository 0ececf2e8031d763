/** Whether a worker is alive, as the front door can tell from the heartbeat in the store. */
import { errorMessage } from "../core/error_message.ts";
import type { Config } from "../core/config.ts";
import { LANES, type QueueDepth } from "../core/queue.ts";
import type { Services } from "../core/services.ts";
import { ApiError } from "./errors.ts";

/** What `GET /healthz` reports. */
export interface Health {
  status: "ok" | "degraded";
  backend: string;
  queues?: Record<string, QueueDepth>;
  worker: { last_seen: string | null; seconds_ago: number | null; stale: boolean };
  error?: string;
}

/** Whole seconds since a worker was last seen, or null when none ever was. */
export function secondsSinceSeen(seen: Date | undefined, now = Date.now()): number | null {
  return seen ? Math.max(0, Math.round((now - seen.getTime()) / 1000)) : null;
}

/** Queue depths and when a worker was last seen; never throws. */
export async function health(services: Services): Promise<Health> {
  const { store, queue, config } = services;
  try {
    const depths = await Promise.all(LANES.map((lane) => queue.depth(lane)));
    const seen = await store.lastWorkerSeen();
    const secondsAgo = secondsSinceSeen(seen);
    return {
      status: "ok",
      backend: config.backend,
      queues: Object.fromEntries(LANES.map((lane, i) => [lane, depths[i]])),
      worker: {
        last_seen: seen?.toISOString() ?? null,
        seconds_ago: secondsAgo,
        stale: isStale(secondsAgo, config),
      },
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

/** Throws a 503 when no worker has been seen for `WORKER_STALE_S`. */
export async function ensureWorkerAlive(services: Services): Promise<void> {
  const { config, store } = services;
  if (config.workerStaleSeconds === 0) return;
  const seen = await store.lastWorkerSeen();
  const secondsAgo = secondsSinceSeen(seen);
  if (isStale(secondsAgo, config)) {
    throw new ApiError(
      503,
      seen
        ? `No worker available: the last worker was seen ${secondsAgo} s ago (WORKER_STALE_S is ${config.workerStaleSeconds}); start \`deno task worker\` beside your models`
        : "No worker available: no worker has ever been seen; start `deno task worker` beside your models",
      { code: "no_worker", type: "service_unavailable" },
    );
  }
}

function isStale(secondsAgo: number | null, config: Config): boolean {
  if (config.workerStaleSeconds === 0) return false;
  return secondsAgo === null || secondsAgo > config.workerStaleSeconds;
}
