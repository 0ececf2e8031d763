/** The errors a client sees, in OpenAI's error shape. */
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { shorten } from "../core/text.ts";

/** One problem with a request, tied to the field it concerns. */
export interface FieldProblem {
  param: string;
  message: string;
}

/** Options for {@linkcode ApiError}. */
export interface ApiErrorOptions {
  type?: string;
  code?: string;
  param?: string;
  details?: FieldProblem[];
  /** The job the error is about, so a client can look it up. */
  jobId?: string;
  /** Headers the response carries, such as `Retry-After`. */
  headers?: Record<string, string>;
  cause?: unknown;
}

/** An error a client should see as it is, with its HTTP status. */
export class ApiError extends Error {
  readonly status: ContentfulStatusCode;
  readonly type: string;
  readonly code?: string;
  readonly param?: string;
  readonly details?: FieldProblem[];
  readonly jobId?: string;
  readonly headers?: Record<string, string>;

  constructor(status: ContentfulStatusCode, message: string, options: ApiErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.name = "ApiError";
    this.status = status;
    this.type = options.type ?? defaultType(status);
    this.code = options.code;
    this.param = options.param;
    this.details = options.details;
    this.jobId = options.jobId;
    this.headers = options.headers;
  }
}

/** OpenAI's error body: `{ error: { message, type, code?, param? } }`. */
export interface ErrorBody {
  error: {
    message: string;
    type: string;
    code?: string;
    param?: string;
    details?: FieldProblem[];
    job_id?: string;
  };
}

/** Problems listed in one 400; a body with more gets a count of the rest. */
export const MAX_LISTED_PROBLEMS = 10;

/**
 * A 400 listing the problems found in a request body: the first
 * {@linkcode MAX_LISTED_PROBLEMS}, and how many more there are, so a small
 * body with thousands of mistakes cannot produce a huge answer.
 */
export function invalidRequest(problems: FieldProblem[]): ApiError {
  const listed = problems.slice(0, MAX_LISTED_PROBLEMS).map((p) => ({
    param: shorten(p.param, 200),
    message: shorten(p.message, 300),
  }));
  const more = problems.length - listed.length;
  const summary = listed.map((p) => `${p.param}: ${p.message}`).join("; ") +
    (more > 0 ? `; and ${more} more problem${more === 1 ? "" : "s"}` : "");
  return new ApiError(400, `Invalid request: ${summary}`, {
    code: "invalid_field",
    param: listed[0]?.param,
    details: listed,
  });
}

/** The JSON body for an unknown route. */
export function notFoundBody(method: string, path: string): ErrorBody {
  return {
    error: { message: `Not found: no route for ${method} ${path}`, type: "not_found_error" },
  };
}

/** The JSON body of an error, as the error handler sends it. */
export function toBody(err: ApiError): ErrorBody {
  const error: ErrorBody["error"] = { message: err.message, type: err.type };
  if (err.code) error.code = err.code;
  if (err.param) error.param = err.param;
  if (err.details) error.details = err.details;
  if (err.jobId) error.job_id = err.jobId;
  return { error };
}

function defaultType(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 404) return "not_found_error";
  if (status < 500) return "invalid_request_error";
  return "api_error";
}
