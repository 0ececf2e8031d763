/**
 * AWS's JSON protocol as signed `fetch` calls: what DynamoDB and SQS speak.
 * One call is one POST of the operation's input as JSON, named by the
 * `x-amz-target` header and signed with Signature Version 4; the answer is
 * the operation's output as JSON, or an error named by its `__type`.
 *
 * The gateway's store and queue use a handful of operations, and the SDK's
 * clients cost the worker about 0.4 ms of CPU a call more than this and 20 MiB
 * of memory to load (README, "Performance"). Attempts, timeouts and the
 * errors worth another attempt are the SDK's standard ones.
 */
import { type SigningCredentials, signRequest } from "./sigv4.ts";

/** Where the credentials of each call come from; asked for every call. */
export type CredentialSource = () => Promise<SigningCredentials>;

/** Which service, where, and who signs. */
export interface JsonServiceOptions {
  /** The signing name: `dynamodb` or `sqs`. */
  service: string;
  /** The `x-amz-target` prefix: `DynamoDB_20120810` or `AmazonSQS`. */
  targetPrefix: string;
  region: string;
  credentials: CredentialSource;
  /** An emulator's address; AWS's regional endpoint when undefined. */
  endpoint?: string;
  /** Attempts per call when the service answers 5xx or throttles, or the network fails. */
  maxAttempts?: number;
  /** How long one attempt may take, in milliseconds, unless the call says otherwise. */
  timeoutMs?: number;
  /** Headers every call sends (SQS's `x-amzn-query-mode`). */
  headers?: Record<string, string>;
  /** Told of every call, before its first attempt (the bench counts them). */
  onCall?: (operation: string) => void;
}

/**
 * An error answer from an AWS service. `name` is the error's type
 * (`ConditionalCheckFailedException`, `QueueDoesNotExist`), as the SDK names
 * it, or `Http<status>` for an answer that names none (a proxy's or an
 * emulator's page); `details` holds the rest of the answer, such as a
 * cancelled transaction's `CancellationReasons`. Never carries the request.
 */
export class AwsServiceError extends Error {
  constructor(
    name: string,
    message: string,
    /** The HTTP status of the answer. */
    readonly status: number,
    /** SQS's older code for the same error (`AWS.SimpleQueueService.NonExistentQueue`). */
    readonly code: string | undefined,
    readonly details: Record<string, unknown>,
    /** The time on the service's clock when it answered (its `date` header), if it said. */
    readonly serverTime?: number,
  ) {
    super(message);
    this.name = name;
  }
}

/**
 * The service could not be reached, or did not answer in time: fetch's own
 * error is the `cause`. Worth another attempt.
 */
export class AwsNetworkError extends Error {
  constructor(what: string, cause: unknown) {
    super(`${what} got no answer: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause,
    });
    this.name = "AwsNetworkError";
  }
}

/** Whether `err` is an AWS error answer of type `name`. */
export function isAwsError(err: unknown, name: string): err is AwsServiceError {
  return err instanceof AwsServiceError && err.name === name;
}

/** Error types that mean "too fast, wait and try again" (the SDK's list). */
const THROTTLING = new Set([
  "BandwidthLimitExceeded",
  "LimitExceededException",
  "ProvisionedThroughputExceededException",
  "RequestLimitExceeded",
  "RequestThrottled",
  "RequestThrottledException",
  "SlowDown",
  "ThrottledException",
  "Throttling",
  "ThrottlingException",
  "TooManyRequestsException",
  "TransactionInProgressException",
]);

/** Error types a request signed on a clock far from AWS's gets (the SDK's list). */
const CLOCK_SKEW = new Set([
  "AuthFailure",
  "InvalidSignatureException",
  "RequestExpired",
  "RequestInTheFuture",
  "RequestTimeTooSkewed",
  "SignatureDoesNotMatch",
]);

/** How far this machine's clock may be from AWS's before requests are signed on AWS's time. */
const SKEW_TOLERANCE_MS = 4 * 60_000;

/** Error types that say the attempt was cut short, not refused. */
const TRANSIENT = new Set(["RequestTimeout", "RequestTimeoutException", "InternalFailure"]);

/** One AWS service spoken to in JSON. */
export class JsonService {
  #options: JsonServiceOptions;
  #url: URL;
  #contentType = "application/x-amz-json-1.0";
  /** How far AWS's clock is ahead of this machine's, once a refusal has shown it is far off. */
  #clockOffsetMs = 0;

  constructor(options: JsonServiceOptions) {
    this.#options = options;
    this.#url = new URL(options.endpoint ?? regionalEndpoint(options.service, options.region));
  }

  /**
   * Calls `operation` with `input`; its output, or an {@linkcode AwsServiceError}
   * or {@linkcode AwsNetworkError}. Every attempt sends the same body. A call
   * that waits on the server (a long poll) gets `waitSeconds` on top of its
   * time, so it is never cut off while it waits; only a stuck one is.
   */
  async call<Output>(
    operation: string,
    input: object,
    options: { waitSeconds?: number } = {},
  ): Promise<Output> {
    this.#options.onCall?.(operation);
    const body = JSON.stringify(input);
    const timeoutMs = (this.#options.timeoutMs ?? 10_000) + (options.waitSeconds ?? 0) * 1000;
    const attempts = this.#options.maxAttempts ?? 3;
    for (let attempt = 1;; attempt++) {
      try {
        return await this.#attempt<Output>(operation, body, timeoutMs);
      } catch (err) {
        if (attempt >= attempts) throw err;
        // Signed on a clock minutes off AWS's (a laptop after sleep): sign on AWS's time at once.
        if (this.#correctClock(err)) continue;
        if (!worthAnotherAttempt(err)) throw err;
        const throttled = err instanceof AwsServiceError && THROTTLING.has(err.name);
        await pauseBeforeAttempt(attempt + 1, throttled);
      }
    }
  }

  /** Whether `err` showed this machine's clock to be off AWS's, now corrected. */
  #correctClock(err: unknown): boolean {
    if (!(err instanceof AwsServiceError) || !CLOCK_SKEW.has(err.name)) return false;
    if (err.serverTime === undefined) return false;
    const offset = err.serverTime - Date.now();
    if (Math.abs(offset - this.#clockOffsetMs) < SKEW_TOLERANCE_MS) return false;
    this.#clockOffsetMs = offset;
    return true;
  }

  async #attempt<Output>(operation: string, body: string, timeoutMs: number): Promise<Output> {
    const { service, region, credentials } = this.#options;
    const { host: _host, ...headers } = await signRequest({
      method: "POST",
      url: this.#url,
      headers: {
        ...this.#options.headers,
        "content-type": this.#contentType,
        "x-amz-target": `${this.#options.targetPrefix}.${operation}`,
      },
      body,
    }, {
      service,
      region,
      credentials: await credentials(),
      ...(this.#clockOffsetMs ? { signingDate: new Date(Date.now() + this.#clockOffsetMs) } : {}),
    });
    let response: Response;
    let text: string;
    try {
      // fetch sets `host` itself, to the value that was signed.
      response = await fetch(this.#url, {
        method: "POST",
        headers,
        body,
        signal: AbortSignal.timeout(timeoutMs),
      });
      text = await response.text();
    } catch (err) {
      throw new AwsNetworkError(`${service} ${operation}`, err);
    }
    if (response.ok) return (text ? JSON.parse(text) : {}) as Output;
    throw errorFromAnswer(response, text, `${service} ${operation}`);
  }
}

/** AWS's endpoint for a service in a region. */
function regionalEndpoint(service: string, region: string): string {
  const domain = region.startsWith("cn-") ? "amazonaws.com.cn" : "amazonaws.com";
  return `https://${service}.${region}.${domain}`;
}

/** The error an answer that is not 2xx stands for. */
function errorFromAnswer(response: Response, text: string, what: string): AwsServiceError {
  let parsed: Record<string, unknown> = {};
  try {
    const value = JSON.parse(text);
    if (value && typeof value === "object") parsed = value;
  } catch {
    // Not JSON (a proxy's or an emulator's page): named by the status below.
  }
  const { __type, message, Message, code, ...details } = parsed;
  // The SDK's order: the body's type, its code, then the header.
  const rawType = [__type, code, response.headers.get("x-amzn-errortype")]
    .find((type) => typeof type === "string" && type !== "");
  // "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException", "UnknownOperationException:http://..."
  const name = typeof rawType === "string"
    ? rawType.split(",")[0].split("#").pop()!.split(":")[0]
    : `Http${response.status}`;
  const said = firstParagraph(
    typeof message === "string" ? message : typeof Message === "string" ? Message : "",
  );
  // SQS names its errors twice: the JSON type, and the older query code in this header.
  const queryCode = response.headers.get("x-amzn-query-error")?.split(";")[0] || undefined;
  const serverTime = Date.parse(response.headers.get("date") ?? "");
  return new AwsServiceError(
    name,
    `${what} failed: ${response.status} ${name}${said ? `: ${said}` : ""}`,
    response.status,
    queryCode,
    details,
    Number.isNaN(serverTime) ? undefined : serverTime,
  );
}

/**
 * A message's first paragraph: a refused signature's message goes on with
 * the canonical request AWS expected, which holds the session token.
 */
function firstParagraph(message: string): string {
  return message.split(/\r?\n\s*\r?\n/)[0].trim();
}

/** Whether another attempt may succeed where this one failed. */
function worthAnotherAttempt(err: unknown): boolean {
  if (err instanceof AwsNetworkError) return true;
  return err instanceof AwsServiceError &&
    (err.status >= 500 || err.status === 429 || THROTTLING.has(err.name) ||
      TRANSIENT.has(err.name));
}

/**
 * The wait before attempt `attempt` (2 for the first retry) of any AWS call:
 * growing, longer after throttling, with jitter so retries do not line up.
 */
export function pauseBeforeAttempt(attempt: number, throttled = false): Promise<void> {
  const ms = Math.min(20_000, (throttled ? 500 : 100) * 2 ** (attempt - 1) * Math.random());
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The HTTP status of an AWS error (a JSON call's, S3's, or the SDK's); 0 when there is none. */
export function awsErrorStatus(err: unknown): number {
  const { status, $metadata } = (err ?? {}) as {
    status?: unknown;
    $metadata?: { httpStatusCode?: number };
  };
  return typeof status === "number" ? status : $metadata?.httpStatusCode ?? 0;
}
