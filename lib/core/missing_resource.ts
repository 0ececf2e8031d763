/**
 * Errors that say a resource the gateway needs is not there (a table, a
 * queue, the blob bucket) or that nobody listens at its endpoint: a set-up
 * step not taken, not a passing fault. Recognised by their `name` (the AWS
 * SDK's exception names), SQS's older `code`, and a refused connection
 * anywhere in their causes.
 */

/** A resource the gateway needs that is not there, or a service it cannot reach. */
export type MissingResource = "table" | "queue" | "bucket" | "endpoint";

const MISSING_BY_NAME: Record<string, MissingResource> = {
  ResourceNotFoundException: "table",
  QueueDoesNotExist: "queue",
  "AWS.SimpleQueueService.NonExistentQueue": "queue",
  NoSuchBucket: "bucket",
};

/** How many causes deep an error is looked through. */
const MAX_CAUSES = 5;

/** The missing resource an error stands for, looking through its causes; undefined for any other error. */
export function missingResource(err: unknown): MissingResource | undefined {
  for (let at = err, depth = 0; at !== undefined && depth < MAX_CAUSES; depth++) {
    const { name, code, Code, message, cause } = (at ?? {}) as Record<string, unknown>;
    for (const label of [name, code, Code]) {
      if (typeof label === "string" && Object.hasOwn(MISSING_BY_NAME, label)) {
        return MISSING_BY_NAME[label];
      }
    }
    if (
      name === "ConnectionRefused" || code === "ECONNREFUSED" ||
      (typeof message === "string" && /connection refused|ECONNREFUSED/i.test(message))
    ) return "endpoint";
    at = cause;
  }
  return undefined;
}
