/**
 * Request bodies must be JSON, declared as such. A web page can send a
 * `text/plain` POST to any address without asking first (no CORS preflight);
 * `application/json` needs the preflight, which a gateway without
 * `CORS_ORIGINS` never grants.
 */
import type { MiddlewareHandler } from "hono";
import { ApiError } from "./errors.ts";
import type { GatewayEnv } from "./http_context.ts";

/** Refuses a request with a body unless its `Content-Type` is `application/json`. */
export function requireJsonBodies(): MiddlewareHandler<GatewayEnv> {
  return async function requireJsonBody(c, next) {
    if (hasBody(c.req.raw) && !isJson(c.req.header("content-type"))) {
      throw new ApiError(
        415,
        "Unsupported content type: send the body as JSON with `Content-Type: application/json`",
        { code: "unsupported_content_type", param: "content-type" },
      );
    }
    await next();
  };
}

function hasBody(request: Request): boolean {
  return request.body !== null && request.headers.get("content-length") !== "0";
}

function isJson(contentType: string | undefined): boolean {
  return contentType?.split(";")[0].trim().toLowerCase() === "application/json";
}
