/**
 * How the worker behaves when something it depends on (the queue, the store)
 * fails over and over: it pauses longer each time instead of spinning, and
 * logs when the outage starts and when it ends, not every failure. Errors
 * that waiting will not heal (a missing queue, bad credentials) are logged
 * every time, at error level, with the longest pause.
 */
import { errorMessage } from "../core/error_message.ts";
import type { Logger } from "../core/log.ts";

/**
 * Pauses after consecutive failures: the first, doubling up to the longest;
 * after an error that waiting will not heal, the lasting pause.
 */
export interface PauseSchedule {
  firstMs: number;
  maxMs: number;
  /** Default 30 s. */
  lastingMs?: number;
}

/**
 * Half a second, doubling up to 4 s: a worker whose queue was away takes its
 * next job within 4 s of its return, with one call per 4 s meanwhile (every
 * loop shares the pause); a set-up fault waits half a minute between tries.
 */
export const DEFAULT_PAUSES: PauseSchedule = { firstMs: 500, maxMs: 4_000, lastingMs: 30_000 };

/**
 * AWS error names that mean the request can never succeed as it stands: the
 * resource is missing, or the credentials are wrong, expired or not allowed.
 */
const LASTING_ERROR_NAMES = new Set([
  "QueueDoesNotExist",
  "AWS.SimpleQueueService.NonExistentQueue",
  "ResourceNotFoundException",
  "InvalidClientTokenId",
  "UnrecognizedClientException",
  "SignatureDoesNotMatch",
  "IncompleteSignature",
  "MissingAuthenticationToken",
  "InvalidSecurity",
  "ExpiredToken",
  "ExpiredTokenException",
  "AccessDenied",
  "AccessDeniedException",
]);

/**
 * Whether waiting will not heal this error: it needs someone to change the
 * set-up. Read as the AWS SDK shapes its errors: the error's `name`, SQS's
 * older `Code` (`AWS.SimpleQueueService.NonExistentQueue`), or only the
 * answer's status (`$metadata.httpStatusCode`), for an answer the SDK cannot
 * read (an emulator's or a proxy's page).
 */
export function isLastingError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const { Code, $metadata } = err as { Code?: unknown; $metadata?: { httpStatusCode?: unknown } };
  if (LASTING_ERROR_NAMES.has(err.name)) return true;
  if (typeof Code === "string" && LASTING_ERROR_NAMES.has(Code)) return true;
  const status = $metadata?.httpStatusCode;
  return status === 401 || status === 403;
}

/** The pause after the `failures`-th failure in a row (1 for the first). */
export function pauseAfter(failures: number, schedule: PauseSchedule = DEFAULT_PAUSES): number {
  return Math.min(schedule.maxMs, schedule.firstMs * 2 ** Math.max(0, failures - 1));
}

/** Options for {@linkcode OutageTracker}. */
export interface OutageTrackerOptions {
  logger: Logger;
  /** What fails, for the log, e.g. "queue". */
  what: string;
  /** What to tell the operator when an error will not heal by waiting. */
  lastingHint: string;
  pauses?: PauseSchedule;
}

/** Counts consecutive failures of one dependency and says how long to pause. */
export class OutageTracker {
  #options: OutageTrackerOptions;
  #failures = 0;
  #since?: number;

  constructor(options: OutageTrackerOptions) {
    this.#options = options;
  }

  /** Whether the last call failed. */
  get down(): boolean {
    return this.#failures > 0;
  }

  /** Records a failure and returns how long to pause before trying again. */
  failed(err: unknown): number {
    const { logger, what, lastingHint } = this.#options;
    const schedule = this.#options.pauses ?? DEFAULT_PAUSES;
    this.#failures++;
    this.#since ??= Date.now();
    const error = errorMessage(err);
    if (isLastingError(err)) {
      const lastingMs = schedule.lastingMs ?? 30_000;
      logger.error(`Cannot use the ${what}: ${lastingHint}`, {
        error,
        retry_in_s: lastingMs / 1000,
      });
      return lastingMs;
    }
    const pause = pauseAfter(this.#failures, schedule);
    if (this.#failures === 1) {
      logger.warn(`The ${what} is unreachable; retrying with growing pauses`, {
        error,
        retry_in_s: pause / 1000,
      });
    }
    return pause;
  }

  /** Records a success; logs once when it ends an outage. */
  succeeded(): void {
    if (this.#failures === 0) return;
    this.#options.logger.info(`The ${this.#options.what} is reachable again`, {
      away_s: Math.round((Date.now() - this.#since!) / 1000),
      failures: this.#failures,
    });
    this.#failures = 0;
    this.#since = undefined;
  }
}
