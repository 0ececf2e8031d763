/**
 * Where a message goes: its backend and model, from what the workers serve
 * (lib/http/model_directory.ts), and a worker alive to take it.
 *
 * On DynamoDB the workers' records cost a read, so a front door routes from
 * the records it read in the last second, if any, and reads them again only
 * when that routing fails (a model a worker has just started serving, a
 * worker just back): each message that finds a route saves a call. Workers
 * write their records every `VISIBILITY_TIMEOUT_S` / 3 at most, and count as
 * gone after three missed heartbeats, so a second's delay changes no answer
 * that matters; a job routed to a worker that has just stopped waits in its
 * backend's queue, as it would have a second later. The embedded store reads
 * its own file, so it reads every time.
 */
import type { Services } from "../core/services.ts";
import { ApiError } from "./errors.ts";
import { ModelDirectory, type RouteRequest, type Target } from "./model_directory.ts";
import { ensureWorkerAlive } from "./worker_status.ts";

/** How old the workers' records a front door routes by may be. */
export const ROUTING_RECORDS_MAX_AGE_MS = 1000;

/**
 * The backend and model for a message; throws the directory's 404 or 400,
 * `check`'s error for a target that cannot take the request, or a 503 when
 * no worker of the backend has been seen for `WORKER_STALE_S`.
 */
export async function routeMessage(
  services: Services,
  request: RouteRequest,
  check?: (target: Target) => void,
): Promise<Target> {
  const route = (directory: ModelDirectory) => {
    const target = directory.route(request);
    check?.(target);
    ensureWorkerAlive(target.backend, { directory, config: services.config });
    return target;
  };
  if (services.config.backend === "aws") {
    try {
      return route(await ModelDirectory.recent(services, ROUTING_RECORDS_MAX_AGE_MS));
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      // The records may have changed since: the answer stands only if a fresh read agrees.
    }
  }
  return route(await ModelDirectory.read(services));
}
