/**
 * Errors in Anthropic's shape, for the routes of its Messages API:
 * `{ type: "error", error: { type, message }, request_id }`, the type chosen
 * by the status as Anthropic's API chooses it. The error handler
 * (lib/http/error_handler.ts) decides which shape a path gets.
 */
import type { ClientFailure } from "./error_handler.ts";

/** The paths of Anthropic's Messages API, whose errors take its shape. */
export const ANTHROPIC_PATH_PREFIX = "/v1/messages";

/** Whether a request path is one of Anthropic's Messages API. */
export function isAnthropicPath(path: string): boolean {
  return path === ANTHROPIC_PATH_PREFIX || path.startsWith(`${ANTHROPIC_PATH_PREFIX}/`);
}

/** Anthropic's error body. */
export interface AnthropicErrorBody {
  type: "error";
  error: { type: string; message: string };
  request_id?: string;
}

/** Anthropic's error type for an HTTP status. */
export function anthropicErrorType(status: number): string {
  switch (status) {
    case 401:
      return "authentication_error";
    case 402:
      return "billing_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 409:
      return "conflict_error";
    case 413:
      return "request_too_large";
    case 429:
      return "rate_limit_error";
    case 503:
    case 529:
      return "overloaded_error";
    case 504:
      return "timeout_error";
  }
  return status < 500 ? "invalid_request_error" : "api_error";
}

/** A failure as Anthropic's error body; the message is the gateway's, which names the field. */
export function anthropicErrorBody(
  failure: Pick<ClientFailure, "status" | "body">,
  requestId?: string,
): AnthropicErrorBody {
  const body: AnthropicErrorBody = {
    type: "error",
    error: { type: anthropicErrorType(failure.status), message: failure.body.error.message },
  };
  if (requestId) body.request_id = requestId;
  return body;
}
