/**
 * A key's limits at the front door: each request that would make a job is
 * counted against its key's requests and tokens per window and its jobs
 * waiting, before anything is written (lib/http/submit.ts calls
 * {@linkcode admitJob}, so every route that makes a job is limited alike).
 * A request past a limit gets a 429 in OpenAI's shape (Anthropic's on its
 * routes: lib/http/error_handler.ts picks), naming the limit and the key,
 * with `Retry-After`; every answer to a key with a rate limit carries
 * OpenAI's `x-ratelimit-*` headers ({@linkcode rateLimitHeaders}), so the
 * official SDKs wait the right time before they retry.
 *
 * The key's in-flight limit is the worker's to keep: its jobs wait their turn
 * (lib/worker/key_turns.ts), they are not refused.
 */
import type { MiddlewareHandler } from "hono";
import { isLimited, keyOf, type KeySpec } from "../core/key_config.ts";
import {
  joinSet,
  type LimitWindow,
  slotMember,
  windowAt,
  type WindowCounts,
} from "../core/key_counters.ts";
import type { JobLimits } from "../core/jobs.ts";
import type { Services } from "../core/services.ts";
import { ApiError } from "./errors.ts";
import type { GatewayEnv } from "./http_context.ts";

/**
 * How long a key whose waiting jobs are at their limit is told to wait: when
 * one of them starts is not known, and a job often runs for seconds.
 */
export const WAITING_RETRY_MS = 2000;

/** What a job was counted for, and how to take it back if the job is not made after all. */
export interface Admission {
  /** The record's `limits` field. */
  limits: JobLimits;
  /** Takes back what was counted: for a request refused or failed after it was admitted. */
  undo(): Promise<void>;
}

/** What to count for a job: its owner, its id and its estimated tokens. */
export interface AdmitOptions {
  owner: string | undefined;
  jobId: string;
  tokens: number;
}

/**
 * Counts a job against its key's limits, or throws the 429 that says which
 * one it is over. Returns undefined for a key without limits (or without a
 * key). A window's request and a waiting place are taken in two steps: if
 * the second refuses, the first is given back.
 */
export async function admitJob(
  services: Services,
  options: AdmitOptions,
): Promise<Admission | undefined> {
  const { config, counters } = services;
  const key = keyOf(config.keys, options.owner);
  if (!isLimited(key)) return undefined;
  const { rpm, tpm, waiting, in_flight } = key.limits;
  const limits: JobLimits = {};
  const undos: (() => Promise<void>)[] = [];
  const undo = async () => {
    await Promise.all(undos.map((u) => u().catch(() => {})));
  };
  if (rpm !== undefined || tpm !== undefined) {
    const window = windowAt(Date.now(), config.limitWindowSeconds);
    const result = await counters.countRequest(key.owner, window, options.tokens, {
      requests: rpm,
      tokens: tpm,
    });
    if (!result.counted) throw windowRefusal(key, window, result.counts);
    undos.push(() =>
      counters.addToWindow(key.owner, window, { requests: -1, tokens: -options.tokens })
    );
    if (tpm !== undefined) {
      Object.assign(limits, { tokens: options.tokens, window_s: window.seconds });
    }
  }
  if (waiting !== undefined) {
    const member = slotMember(options.jobId);
    const joined = await joinSet(counters, "waiting", key.owner, member, waiting, {
      graceMs: 2 * config.visibilityTimeoutSeconds * 1000,
    }).catch(async (err) => {
      await undo();
      throw err;
    });
    if (!joined.joined) {
      await undo();
      throw waitingRefusal(key, joined.members.length);
    }
    undos.push(() => counters.removeMembers("waiting", key.owner, [member]));
    limits.waiting = member;
  }
  if (in_flight !== undefined) limits.in_flight = in_flight;
  return { limits, undo };
}

/** Options for {@linkcode rateLimitHeaders}. */
export interface RateLimitHeadersOptions {
  services: Services;
  /** Paths that get no headers: the console's files. */
  skipPaths?: readonly string[];
}

/**
 * Adds OpenAI's `x-ratelimit-*` headers to every answer to a key with a
 * requests or tokens limit, as its window stands once the request is done
 * (an answer that has them already, a 429, keeps its own).
 */
export function rateLimitHeaders(options: RateLimitHeadersOptions): MiddlewareHandler<GatewayEnv> {
  const { config, counters } = options.services;
  const skip = new Set(options.skipPaths ?? []);
  return async function addRateLimitHeaders(c, next) {
    await next();
    const key = c.get("key");
    if (!key || (key.limits.rpm === undefined && key.limits.tpm === undefined)) return;
    const has = (name: string) => c.res.headers.has(name);
    if (
      skip.has(c.req.path) || has("x-ratelimit-reset-requests") || has("x-ratelimit-reset-tokens")
    ) {
      return;
    }
    const window = windowAt(Date.now(), config.limitWindowSeconds);
    // The answer matters more than its headers: a failed read leaves them out.
    const counts = await counters.windowCounts(key.owner, window).catch(() => undefined);
    if (!counts) return;
    for (const [name, value] of Object.entries(windowHeaders(key, window, counts))) {
      c.res.headers.set(name, value);
    }
  };
}

/**
 * OpenAI's rate-limit headers for a key's window: each limit, what is left
 * of it, and when the window resets (as OpenAI writes it: `1m0s`, `12.5s`, `250ms`).
 */
export function windowHeaders(
  key: KeySpec,
  window: LimitWindow,
  counts: WindowCounts,
  now = Date.now(),
): Record<string, string> {
  const reset = resetText(windowEndMs(window) - now);
  const headers: Record<string, string> = {};
  const { rpm, tpm } = key.limits;
  for (
    const [suffix, limit, used] of [["requests", rpm, counts.requests], [
      "tokens",
      tpm,
      counts.tokens,
    ]] as const
  ) {
    if (limit === undefined) continue;
    headers[`x-ratelimit-limit-${suffix}`] = String(limit);
    headers[`x-ratelimit-remaining-${suffix}`] = String(Math.max(0, limit - used));
    headers[`x-ratelimit-reset-${suffix}`] = reset;
  }
  return headers;
}

/** The 429 for a window at its requests or tokens limit: retry once it ends. */
function windowRefusal(key: KeySpec, window: LimitWindow, counts: WindowCounts): ApiError {
  const { rpm, tpm } = key.limits;
  const byRequests = rpm !== undefined && counts.requests >= rpm;
  const waitMs = Math.max(1, windowEndMs(window) - Date.now());
  const what = byRequests
    ? `requests per window (rpm): limit ${rpm}, used ${counts.requests}`
    : `tokens per window (tpm): limit ${tpm}, used ${counts.tokens}`;
  return new ApiError(
    429,
    `Rate limit reached for key "${key.name}" on ${what}, in a window of ${window.seconds} s (LIMIT_WINDOW_S); try again in ${
      resetText(waitMs)
    }`,
    {
      // OpenAI's own types for the two limits; Anthropic's shape says rate_limit_error.
      type: byRequests ? "requests" : "tokens",
      code: "rate_limit_exceeded",
      headers: { ...retryAfter(waitMs), ...windowHeaders(key, window, counts) },
    },
  );
}

/** The 429 for a key whose jobs waiting to start are at its limit. */
function waitingRefusal(key: KeySpec, waiting: number): ApiError {
  return new ApiError(
    429,
    `Rate limit reached for key "${key.name}" on jobs waiting to start (waiting): limit ${key.limits.waiting}, waiting ${waiting}; try again once one of them has started`,
    { type: "requests", code: "rate_limit_exceeded", headers: retryAfter(WAITING_RETRY_MS) },
  );
}

/** `Retry-After` in whole seconds (rounded up), and the exact wait in `retry-after-ms`, which OpenAI's SDKs prefer. */
function retryAfter(ms: number): Record<string, string> {
  return { "retry-after": String(Math.ceil(ms / 1000)), "retry-after-ms": String(Math.ceil(ms)) };
}

function windowEndMs(window: LimitWindow): number {
  return (window.start + window.seconds) * 1000;
}

/** A wait as OpenAI's headers write it: `250ms`, `12.5s`, `1m0s`. */
export function resetText(ms: number): string {
  const whole = Math.max(0, Math.ceil(ms));
  if (whole < 1000) return `${whole}ms`;
  const minutes = Math.floor(whole / 60_000);
  const seconds = Math.round((whole % 60_000) / 10) / 100;
  return minutes > 0 ? `${minutes}m${seconds}s` : `${seconds}s`;
}
