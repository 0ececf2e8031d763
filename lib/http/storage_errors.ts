/**
 * What a client is told when the store, the queue or the blob bucket fails.
 * A service's own error text names accounts, roles and resources
 * (`User: arn:aws:sts::123456789012:assumed-role/… is not authorized…`), so
 * it goes to the log only; the client gets what failed in general terms and
 * the request id that finds the log line. A resource that is missing, or an
 * endpoint that refuses connections, is a set-up step not taken: the answer
 * says which kind and the command that fixes it.
 *
 * Errors are recognised by their `name` (the AWS SDK's exception names; the
 * gateway's own AWS transport names its errors the same way), SQS's older
 * `code`, and their HTTP status (`$metadata.httpStatusCode`, or `status`).
 */
import { HTTPException } from "hono/http-exception";
import { type MissingResource, missingResource } from "../core/missing_resource.ts";
import { ApiError } from "./errors.ts";

/** What to say of each missing resource: what is missing, and what makes it. */
const FIXES: Record<MissingResource, string> = {
  table: "a DynamoDB table of the gateway is missing: run `deno task setup`",
  queue: "an SQS queue of the gateway is missing: run `deno task setup`",
  bucket: "the blob bucket is missing: run `deno task setup`",
  endpoint:
    "the AWS endpoint refuses connections: start moto_server (or check AWS_ENDPOINT_URL), then run `deno task setup`",
};

/**
 * Whether an error comes from a storage service (an AWS answer, or no answer
 * at all) rather than from the gateway's own code: it carries an HTTP status,
 * or is a network failure of the AWS transport.
 */
export function isServiceError(err: unknown): boolean {
  // Hono's own errors carry a status too, and are the gateway's, not a service's.
  if (err instanceof HTTPException) return false;
  if (missingResource(err) !== undefined) return true;
  const { name, status, $metadata } = (err ?? {}) as Record<string, unknown>;
  const httpStatus = (($metadata ?? {}) as { httpStatusCode?: unknown }).httpStatusCode;
  return typeof status === "number" || typeof httpStatus === "number" ||
    name === "AwsNetworkError" || name === "TimeoutError";
}

/**
 * What a client may be told of a failed storage call: what is unavailable
 * (`what`, such as "the queue"), or the missing resource and its fix; never
 * the service's own text.
 */
export function storageProblem(err: unknown, what: string): string {
  const missing = missingResource(err);
  return missing ? FIXES[missing] : `${what} is unavailable`;
}

/** What {@linkcode storageFailure} says. */
export interface StorageFailureOptions {
  /** The action that failed, first in the message: "Cannot enqueue job". */
  action: string;
  /** What failed, in general terms: "the queue". */
  what: string;
  /** The job the failure is about. */
  jobId?: string;
}

/**
 * A 503 for a failed storage call: the action, then
 * {@linkcode storageProblem}. The service's error is its `cause`, which the
 * error handler logs with the request id it gives the client.
 */
export function storageFailure(err: unknown, options: StorageFailureOptions): ApiError {
  const missing = missingResource(err);
  const code = missing === undefined
    ? "service_unavailable"
    : missing === "endpoint"
    ? "endpoint_unreachable"
    : "resource_missing";
  return new ApiError(503, `${options.action}: ${storageProblem(err, options.what)}`, {
    code,
    type: "api_error",
    jobId: options.jobId,
    cause: err,
  });
}
