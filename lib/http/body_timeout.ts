/**
 * A deadline on reading a request's body, so a client that sends headers and
 * then trickles (or never sends) its body cannot hold a request open.
 */
import type { MiddlewareHandler } from "hono";
import { ApiError } from "./errors.ts";
import type { GatewayEnv } from "./http_context.ts";

/** Options for {@linkcode limitBodyReadTime}. */
export interface BodyTimeoutOptions {
  timeoutMs: number;
  /** The variable that sets the limit, named in the refusal. */
  variable: string;
}

/** Answers 408 when a request's body has not fully arrived `timeoutMs` after its headers. */
export function limitBodyReadTime(options: BodyTimeoutOptions): MiddlewareHandler<GatewayEnv> {
  return async function limitBodyTime(c, next) {
    const body = c.req.raw.body;
    if (body === null) return await next();
    const timedOut = new ApiError(
      408,
      `Request body timeout: the body did not arrive within ${
        options.timeoutMs / 1000
      } s (${options.variable})`,
      { code: "body_timeout", param: "body" },
    );
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(timedOut), options.timeoutMs);
    });
    deadline.catch(() => {}); // a handler that never reads the body is not an error
    const reader = body.getReader();
    const timed = new ReadableStream<Uint8Array>({
      async pull(controller) {
        try {
          const { done, value } = await Promise.race([reader.read(), deadline]);
          if (done) {
            clearTimeout(timer);
            controller.close();
          } else controller.enqueue(value);
        } catch (err) {
          clearTimeout(timer);
          reader.cancel(err).catch(() => {});
          controller.error(err);
        }
      },
      cancel(reason) {
        clearTimeout(timer);
        return reader.cancel(reason);
      },
    });
    c.req.raw = new Request(c.req.raw, { body: timed, duplex: "half" } as RequestInit);
    try {
      await next();
    } finally {
      clearTimeout(timer);
    }
  };
}
