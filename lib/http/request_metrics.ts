/**
 * The front door's own counters: requests by route and status. They live in
 * this instance's memory, so they start at zero with each process, and each
 * Lambda instance counts only the requests it served (Prometheus cannot
 * scrape one Lambda instance; use API Gateway's CloudWatch metrics there).
 * Everything else `GET /metrics` shows is read from the store and the queue.
 */
import type { MiddlewareHandler } from "hono";
import { matchedRoutes } from "hono/route";
import type { GatewayEnv } from "./http_context.ts";

/** The route label of requests no route matched. */
const UNMATCHED = "unmatched";

/** Request counts of one front-door instance. */
export class RequestCounts {
  /** When this instance started counting (epoch ms). */
  readonly since = Date.now();
  #counts = new Map<string, { method: string; route: string; status: number; count: number }>();

  /** Counts one answered request. */
  add(method: string, route: string, status: number): void {
    const key = `${method} ${route} ${status}`;
    const entry = this.#counts.get(key);
    if (entry) entry.count++;
    else this.#counts.set(key, { method, route, status, count: 1 });
  }

  /** Every count so far. */
  entries(): { method: string; route: string; status: number; count: number }[] {
    return [...this.#counts.values()].map((entry) => ({ ...entry }));
  }
}

/**
 * Counts each request under the path of the route that answered it (such as
 * `/jobs/:job_id`, never the raw path), so the number of series stays small.
 */
export function countRequests(counts: RequestCounts): MiddlewareHandler<GatewayEnv> {
  return async function countRequest(c, next) {
    await next();
    const route = matchedRoutes(c).findLast((r) => r.method !== "ALL")?.path ?? UNMATCHED;
    counts.add(c.req.method, route, c.res.status);
  };
}
