/** One log line per request, and a request id on every response. */
import type { MiddlewareHandler } from "hono";
import type { Logger } from "../core/log.ts";
import { shorten } from "../core/text.ts";
import type { GatewayEnv } from "./http_context.ts";

/** Options for {@linkcode requestLog}. */
export interface RequestLogOptions {
  logger: Logger;
  /** The longest request id taken from the client's `X-Request-Id`. Default 100. */
  maxIdLength?: number;
}

/** Logs each request's method, path, status and time, with its request id (the client's or a new one). */
export function requestLog(options: RequestLogOptions): MiddlewareHandler<GatewayEnv> {
  const { logger, maxIdLength = 100 } = options;
  return async function logRequest(c, next) {
    const requestId = c.req.header("x-request-id")?.slice(0, maxIdLength) || crypto.randomUUID();
    c.set("requestId", requestId);
    const started = performance.now();
    await next();
    c.header("x-request-id", requestId);
    logger.info("Request handled", {
      request_id: requestId,
      // Both are whatever the client sent, before any key is checked: a line stays a line.
      method: shorten(c.req.method, 20),
      path: shorten(c.req.path, 300),
      status: c.res.status,
      // The key's name, never the key: set once the key was checked.
      key: c.get("key")?.name,
      ms: Math.round(performance.now() - started),
    });
  };
}
