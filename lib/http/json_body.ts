/**
 * Request bodies must be JSON, declared as such. A web page can send a
 * `text/plain` POST to any address without asking first (no CORS preflight);
 * `application/json` needs the preflight, which a gateway without
 * `CORS_ORIGINS` never grants. No body at all is no body of the wrong type:
 * `curl -X POST …/cancel` sends neither a body nor a `Content-Type`.
 */
import type { MiddlewareHandler } from "hono";
import { ApiError } from "./errors.ts";
import type { GatewayEnv } from "./http_context.ts";

/** Refuses a request with a body unless its `Content-Type` is `application/json`. */
export function requireJsonBodies(): MiddlewareHandler<GatewayEnv> {
  return async function requireJsonBody(c, next) {
    if (!isJson(c.req.header("content-type")) && await hasBody(c.req.raw)) {
      throw new ApiError(
        415,
        "Unsupported content type: send the body as JSON with `Content-Type: application/json`",
        { code: "unsupported_content_type", param: "content-type" },
      );
    }
    await next();
  };
}

/**
 * Whether a request carries a body. Its length says so when it is given; a
 * server hands a handler a stream even for a request without one (no length,
 * nothing sent), so a stream of unknown length is read to see.
 */
async function hasBody(request: Request): Promise<boolean> {
  if (request.body === null) return false;
  const length = request.headers.get("content-length");
  if (length !== null) return length.trim() !== "0";
  // Read from a copy, up to its first bytes: the handler reads the original.
  const reader = request.clone().body!.getReader();
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) return false;
      if (value.byteLength > 0) return true;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

function isJson(contentType: string | undefined): boolean {
  return contentType?.split(";")[0].trim().toLowerCase() === "application/json";
}
