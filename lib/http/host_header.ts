/**
 * A request whose `Host` is not a host: `Host: evil.com 127.0.0.1` reaches
 * the app as the URL `http://evil.com 127.0.0.1/…`, which no URL parser
 * takes. It is the client's mistake, so it is a 400, before anything (the
 * local guard, a handler) tries to read the URL.
 */
import type { MiddlewareHandler } from "hono";
import { ApiError } from "./errors.ts";
import type { GatewayEnv } from "./http_context.ts";

/** Refuses a request whose URL, as its `Host` header makes it, does not parse. */
export function refuseMalformedHost(): MiddlewareHandler<GatewayEnv> {
  return async function requireWellFormedHost(c, next) {
    if (!URL.canParse(c.req.url)) {
      throw new ApiError(
        400,
        "Invalid Host header: it must be a host name or an IP address, with an optional port",
        { code: "invalid_host", param: "host" },
      );
    }
    await next();
  };
}
