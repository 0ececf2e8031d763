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
/** The label of a method outside {@linkcode METHODS}, and of a status outside 100 to 599. */
const OTHER = "other";
/**
 * The methods counted by name. A method is whatever token the client sends
 * (8 KB of it, if it likes), before any key is checked: each new one would be
 * a new series, so the others all count as one.
 */
const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]);

/** How many requests one method, route and status had. */
export interface RequestCount {
  method: string;
  route: string;
  /** The status, or `other`. */
  status: string;
  count: number;
}

/** Request counts of one front-door instance. */
export class RequestCounts {
  /** When this instance started counting (epoch ms). */
  readonly since = Date.now();
  #counts = new Map<string, RequestCount>();

  /**
   * Counts one answered request. Every label comes from a fixed set whatever
   * the request said: a method not in the list and a status out of range
   * count as `other`, and `route` must be a route's path (or `unmatched`).
   */
  add(method: string, route: string, status: number): void {
    const label = METHODS.has(method) ? method : OTHER;
    const code = Number.isInteger(status) && status >= 100 && status <= 599
      ? String(status)
      : OTHER;
    const key = `${label} ${route} ${code}`;
    const entry = this.#counts.get(key);
    if (entry) entry.count++;
    else this.#counts.set(key, { method: label, route, status: code, count: 1 });
  }

  /** Every count so far. */
  entries(): RequestCount[] {
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
