/**
 * `Idempotency-Key`: a client that sends a request again after an error or a
 * lost answer names it with the same key, and gets the first request's job,
 * never a second one. A key belongs to the API key that sent it and holds for
 * 24 hours; within them a repeat with another body is refused with a 409
 * (Stripe's rule), and a repeat with the same body answers with the first
 * request's job as it now stands. A request whose job could not be queued
 * (a 503) leaves the key free, so its retry makes the job afresh.
 */
import { sha256Hex } from "../core/digest.ts";
import type { HeldIdempotencyKey, IdempotencyClaim } from "../core/store.ts";
import { ApiError, invalidRequest } from "./errors.ts";

/** The request header that carries the key. */
export const IDEMPOTENCY_HEADER = "Idempotency-Key";
/** The response header that marks an answer to a repeat (as Stripe names it). */
export const REPLAYED_HEADER = "Idempotent-Replayed";
/** How long a key holds. */
export const IDEMPOTENCY_KEEP_S = 86_400;
/** The longest key taken (Stripe's limit). */
const MAX_KEY_LENGTH = 255;

/** What identifies a request for its key: the route it was sent to and its body. */
export interface IdempotentRequest {
  /** The header's value, or undefined when the request has none. */
  key: string | undefined;
  /** The API key's owner id; undefined without keys. */
  owner: string | undefined;
  /** The route, e.g. `/chat`: the same key on two routes names two requests. */
  route: string;
  /** The request's body as parsed. */
  body: unknown;
}

/**
 * The claim a request makes on its idempotency key, or undefined when it
 * names none. Throws a 400 naming the header for a key that is empty, too
 * long, or not printable ASCII.
 */
export async function idempotencyClaim(
  request: IdempotentRequest,
  now = Date.now(),
): Promise<IdempotencyClaim | undefined> {
  const { key } = request;
  if (key === undefined) return undefined;
  if (key.length === 0 || key.length > MAX_KEY_LENGTH || !/^[\x21-\x7e]+$/.test(key)) {
    throw invalidRequest([{
      param: IDEMPOTENCY_HEADER,
      message:
        `must be 1 to ${MAX_KEY_LENGTH} printable ASCII characters without spaces, such as a UUID`,
    }]);
  }
  const [id, fingerprint] = await Promise.all([
    sha256Hex(`${request.owner ?? ""}\n${key}`),
    sha256Hex(`${request.route}\n${canonicalJson(request.body)}`),
  ]);
  return { id, fingerprint, expiresAt: Math.floor(now / 1000) + IDEMPOTENCY_KEEP_S };
}

/** Refuses a repeat whose request differs from the first one's, with a 409 the client should not retry. */
export function checkRepeat(claim: IdempotencyClaim, held: HeldIdempotencyKey): void {
  if (held.fingerprint === claim.fingerprint) return;
  throw new ApiError(
    409,
    `Idempotency key reused: an earlier request with this ${IDEMPOTENCY_HEADER} had another route or body (job ${held.jobId}); send a new key with a new request`,
    {
      type: "invalid_request_error",
      code: "idempotency_key_reused",
      param: IDEMPOTENCY_HEADER,
      jobId: held.jobId,
      // The openai SDK retries a 409 unless told not to.
      headers: { "x-should-retry": "false" },
    },
  );
}

/** JSON with every object's keys in order, so that the same body always reads the same. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, inner) => {
    if (inner === null || typeof inner !== "object" || Array.isArray(inner)) return inner;
    return Object.fromEntries(
      Object.keys(inner).sort().map((key) => [key, (inner as Record<string, unknown>)[key]]),
    );
  });
}
