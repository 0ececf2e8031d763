/**
 * Protection for a gateway without API keys, which answers anyone who can
 * reach it: typically `deno task dev` on 127.0.0.1. A web page the user
 * visits can reach that too, so a request carrying a foreign `Origin` (a
 * browser sent it from another site) is refused, and so is a `Host` that is
 * neither an IP address, `localhost` nor a configured name: a page on
 * `rebind.evil.example` whose name an attacker pointed at 127.0.0.1 (DNS
 * rebinding) would otherwise be served as if it were the gateway's own.
 */
import type { MiddlewareHandler } from "hono";
import { isAllowedHost, isLoopbackName, literalAddress } from "../outbound/url_rules.ts";
import { ApiError } from "./errors.ts";
import type { GatewayEnv } from "./http_context.ts";

/** Options for {@linkcode guardLocalGateway}. */
export interface LocalGuardOptions {
  /** `ALLOWED_HOSTS`: names (`host` or `host:port`) the gateway answers to; `*` means any. */
  allowedHosts: readonly string[];
  /** `CORS_ORIGINS`: other sites' pages that may call the gateway. */
  corsOrigins: readonly string[];
}

/** Refuses requests from other sites' pages and under names the gateway does not answer to. */
export function guardLocalGateway(options: LocalGuardOptions): MiddlewareHandler<GatewayEnv> {
  const anyHost = options.allowedHosts.includes("*");
  const origins = new Set(options.corsOrigins.map((o) => o.replace(/\/+$/, "").toLowerCase()));
  return async function refuseForeignRequests(c, next) {
    const url = new URL(c.req.url);
    if (!anyHost && !answersTo(url, options.allowedHosts)) {
      throw new ApiError(
        403,
        "Forbidden host: this gateway answers only to its IP addresses, localhost and the names in ALLOWED_HOSTS",
        { code: "forbidden_host", type: "permission_error" },
      );
    }
    const origin = c.req.header("origin");
    if (origin !== undefined && !sameHost(origin, url) && !origins.has(origin.toLowerCase())) {
      throw new ApiError(
        403,
        "Forbidden origin: a page of another site may call this gateway only when CORS_ORIGINS lists it",
        { code: "forbidden_origin", type: "permission_error" },
      );
    }
    await next();
  };
}

/** An IP address cannot be a rebound name; `localhost` never leaves the machine. */
function answersTo(url: URL, allowedHosts: readonly string[]): boolean {
  return literalAddress(url) !== undefined || isLoopbackName(url.hostname) ||
    isAllowedHost(url, allowedHosts);
}

/** A page of the gateway's own host; the scheme may differ behind a TLS proxy. */
function sameHost(origin: string, url: URL): boolean {
  try {
    return new URL(origin).host === url.host;
  } catch {
    return false; // "null" (a sandboxed frame or a file) or garbage
  }
}
