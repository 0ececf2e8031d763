/**
 * The one place where failures become HTTP responses: in OpenAI's error
 * shape, or Anthropic's on the routes of its Messages API.
 */
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { errorMessage } from "../core/error_message.ts";
import type { Logger } from "../core/log.ts";
import {
  type AnthropicErrorBody,
  anthropicErrorBody,
  isAnthropicPath,
} from "./anthropic_errors.ts";
import { ApiError, type ErrorBody, toBody } from "./errors.ts";
import { isServiceError, storageFailure } from "./storage_errors.ts";

/** A failure as a client gets it. */
export interface ClientFailure {
  status: ContentfulStatusCode;
  body: ErrorBody;
  headers?: Record<string, string>;
}

/** Where {@linkcode clientFailure} logs, and the id it gives the client. */
export interface ClientFailureOptions {
  logger: Logger;
  requestId?: string;
}

/**
 * What a client is told of any error: an {@linkcode ApiError} as it is, a
 * storage service's failure as a 503 in general terms, anything else as a
 * 500. A failure whose cause the client is not shown (a service's error
 * text, a bug) is logged with the request id, and the answer gives that id,
 * so the two can be matched.
 */
export function clientFailure(err: unknown, options: ClientFailureOptions): ClientFailure {
  const { logger, requestId } = options;
  const shown = err instanceof ApiError
    ? err
    : isServiceError(err)
    ? storageFailure(err, { action: "Cannot handle the request", what: "the gateway's storage" })
    : undefined;
  if (shown && shown.status < 500) {
    return { status: shown.status, body: toBody(shown), headers: shown.headers };
  }
  if (shown) {
    logger.error("Request failed", {
      request_id: requestId,
      error: shown.message,
      ...(shown.cause !== undefined ? causeFields(shown.cause) : {}),
    });
  } else {
    logger.error("Request failed with an unexpected error", {
      request_id: requestId,
      error: errorMessage(err),
      error_name: (err as { name?: unknown } | null)?.name,
    });
  }
  const body: ErrorBody = shown ? toBody(shown) : {
    error: {
      message: "Internal error: the gateway could not handle the request",
      type: "api_error",
    },
  };
  if ((!shown || shown.cause !== undefined) && requestId) {
    body.error.message += ` (request id ${requestId}: the gateway's log says more)`;
  }
  return { status: shown?.status ?? 500, body, headers: shown?.headers };
}

/** Builds the `app.onError` handler that answers any thrown error with {@linkcode clientFailure}. */
export function errorHandler(logger: Logger) {
  return function onError(err: Error, c: Context): Response {
    const requestId = c.get("requestId" as never) as string | undefined;
    const failure = clientFailure(err, { logger, requestId });
    return c.json(failureBody(failure, c.req.path, requestId), failure.status, failure.headers);
  };
}

/** A failure's body in the shape the API of `path` uses. */
export function failureBody(
  failure: ClientFailure,
  path: string,
  requestId?: string,
): ErrorBody | AnthropicErrorBody {
  return isAnthropicPath(path) ? anthropicErrorBody(failure, requestId) : failure.body;
}

/** What the log says of an error a client is not shown: its message and name. */
function causeFields(err: unknown): Record<string, string> {
  const name = (err as { name?: unknown } | null)?.name;
  return {
    cause: errorMessage(err),
    ...(typeof name === "string" ? { cause_name: name } : {}),
  };
}
