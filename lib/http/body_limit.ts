/** A size limit on POST bodies, refused in OpenAI's error shape. */
import type { MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { ApiError } from "./errors.ts";
import type { GatewayEnv } from "./http_context.ts";

/** Options for {@linkcode limitPostBodies}. */
export interface PostBodyLimitOptions {
  maxBytes: number;
  /** The variable that sets the limit, named in the refusal. */
  variable: string;
}

/** Refuses a POST body over `maxBytes` with a 413 that names the limit and its variable. */
export function limitPostBodies(options: PostBodyLimitOptions): MiddlewareHandler<GatewayEnv> {
  const limit = bodyLimit({
    maxSize: options.maxBytes,
    onError: () => {
      throw new ApiError(
        413,
        `Request body too large: over ${options.variable} (${options.maxBytes})`,
        { code: "body_too_large", param: "body" },
      );
    },
  });
  return async function limitPostBody(c, next) {
    return c.req.method === "POST" ? await limit(c, next) : await next();
  };
}
