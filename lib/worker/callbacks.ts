/**
 * POSTs a finished job to the `callback_url` its client gave. The URL comes
 * from the client, so it gets the same address checks as an image URL, before
 * every attempt (DNS may change between attempts), and each POST goes to the
 * address that attempt's check approved; redirects are not followed, and
 * retries are few and spaced out, so a dead receiver costs little.
 */
import { jobView } from "../core/job_view.ts";
import type { Job } from "../core/jobs.ts";
import type { Logger } from "../core/log.ts";
import type { Services } from "../core/services.ts";
import { describeUrl, shorten } from "../core/text.ts";
import { OutboundRefusal, vetOutboundUrl, type VettedTarget } from "../outbound/address_check.ts";
import { requestPinned } from "../outbound/guarded_client.ts";
import { sleep } from "../core/sleep.ts";

/** Limits and permissions for {@linkcode deliverCallback}. */
export interface CallbackOptions {
  /** Most POSTs sent, the first included; a positive integer. */
  attempts: number;
  /** Time allowed for one attempt's address check, and again for its POST. */
  timeoutMs: number;
  /** Wait before the first retry; it doubles before each later retry. */
  backoffMs: number;
  /** `host` or `host:port` (IPv6 in brackets) posted to without the public-address check. */
  allowedHosts: readonly string[];
  /** Looks up a host's addresses; default DNS A and AAAA records. */
  resolve?: (hostname: string) => Promise<string[]>;
  /** Stops delivery: a request in flight is cut off and no retry follows. */
  signal?: AbortSignal;
}

/** How a delivery ended; `attempts` counts the POSTs actually sent. */
export type CallbackResult =
  | { delivered: true; attempts: number; status: number }
  | { delivered: false; attempts: number; error: string };

const USER_AGENT = "llm-gateway-callback/1";
/** Client errors that say "try later" rather than "never". */
const RETRIED_CLIENT_ERRORS = new Set([408, 429]);
/** Longer delays overflow `setTimeout`, which would then fire at once. */
const MAX_WAIT_MS = 2 ** 31 - 1;

type Outcome =
  | { kind: "delivered"; status: number }
  | { kind: "retry"; reason: string }
  | { kind: "stop"; reason: string };

type Check = { target: VettedTarget } | { refusal: string };

/** POSTs `payload` as JSON to a client's callback URL, retrying transient failures; never throws. */
export async function deliverCallback(
  url: string,
  payload: unknown,
  options: CallbackOptions,
): Promise<CallbackResult> {
  const shown = describeUrl(url);
  const notSent = (reason: string): CallbackResult => ({
    delivered: false,
    attempts: 0,
    error: `Callback to ${shown} not sent: ${reason}`,
  });
  const problem = optionsProblem(options);
  if (problem) return notSent(problem);
  const body = serialise(payload);
  if (typeof body !== "string") return notSent(body.problem);

  let sent = 0;
  let lastReason = "";
  const failed = (reason: string): CallbackResult => ({
    delivered: false,
    attempts: sent,
    error: `Callback to ${shown} failed after ${plural(sent, "attempt")}: ${reason}`,
  });
  const aborted = () => failed(lastReason ? `aborted (last attempt: ${lastReason})` : "aborted");

  for (;;) {
    if (options.signal?.aborted) return aborted();
    const check = await checkCallbackUrl(url, options);
    if (options.signal?.aborted) return aborted();
    if ("refusal" in check) {
      const when = sent === 0 ? "" : ` before attempt ${sent + 1}`;
      return {
        delivered: false,
        attempts: sent,
        error: `Callback to ${shown} refused${when}: ${check.refusal}`,
      };
    }
    sent++;
    const outcome = await postOnce(check.target, body, options);
    if (outcome.kind === "delivered") {
      return { delivered: true, attempts: sent, status: outcome.status };
    }
    if (outcome.kind === "stop" || sent >= options.attempts) return failed(outcome.reason);
    lastReason = outcome.reason;
    await sleep(Math.min(options.backoffMs * 2 ** (sent - 1), MAX_WAIT_MS), options.signal);
  }
}

function optionsProblem(options: CallbackOptions): string | undefined {
  const { attempts, timeoutMs, backoffMs } = options;
  if (!Number.isSafeInteger(attempts) || attempts < 1) {
    return `attempts must be a positive integer, not ${attempts}`;
  }
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    return `timeoutMs must be a positive number, not ${timeoutMs}`;
  }
  if (!Number.isFinite(backoffMs) || backoffMs < 0) {
    return `backoffMs must be zero or more, not ${backoffMs}`;
  }
  return undefined;
}

function serialise(payload: unknown): string | { problem: string } {
  try {
    const json = JSON.stringify(payload);
    if (typeof json === "string") return json;
    return { problem: `payload of type ${typeof payload} has no JSON form` };
  } catch (err) {
    return { problem: `payload cannot be turned into JSON: ${messageOf(err)}` };
  }
}

/** The outbound address checks, with the caller's abort honoured. */
async function checkCallbackUrl(url: string, options: CallbackOptions): Promise<Check> {
  const timeout = AbortSignal.timeout(options.timeoutMs);
  try {
    const target = await vetOutboundUrl(url, {
      allowedHosts: options.allowedHosts,
      resolve: options.resolve,
      signal: options.signal ? AbortSignal.any([timeout, options.signal]) : timeout,
    });
    return { target };
  } catch (err) {
    if (err instanceof OutboundRefusal) return { refusal: err.message };
    if (timeout.aborted) {
      return { refusal: `no answer from DNS within ${options.timeoutMs / 1000} s` };
    }
    if (options.signal?.aborted) return { refusal: "aborted" };
    return { refusal: `address check failed: ${messageOf(err)}` };
  }
}

async function postOnce(
  target: VettedTarget,
  body: string,
  options: CallbackOptions,
): Promise<Outcome> {
  const timeout = AbortSignal.timeout(options.timeoutMs);
  const signal = options.signal ? AbortSignal.any([timeout, options.signal]) : timeout;
  let response: Response;
  try {
    response = await requestPinned(target, {
      method: "POST",
      body,
      signal,
      headers: { "content-type": "application/json", "user-agent": USER_AGENT },
    });
  } catch (err) {
    if (options.signal?.aborted) return { kind: "stop", reason: "aborted" };
    if (timeout.aborted) {
      return { kind: "retry", reason: `no answer within ${options.timeoutMs / 1000} s` };
    }
    if (err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied) {
      return { kind: "stop", reason: `not permitted: ${messageOf(err)}` };
    }
    return { kind: "retry", reason: `cannot connect: ${messageOf(err)}` };
  }
  await response.body?.cancel().catch(() => {});
  return judge(response);
}

function judge(response: Response): Outcome {
  const { status } = response;
  if (status >= 200 && status < 300) return { kind: "delivered", status };
  if (status >= 300 && status < 400) {
    return { kind: "stop", reason: `answered ${status}, a redirect, which is not followed` };
  }
  if (status >= 500 || RETRIED_CLIENT_ERRORS.has(status)) {
    return { kind: "retry", reason: `answered ${status}` };
  }
  return { kind: "stop", reason: `answered ${status}` };
}

function messageOf(err: unknown): string {
  return shorten(err instanceof Error ? err.message : String(err), 300);
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

/** What {@linkcode notifyCallback} needs. */
export interface CallbackContext {
  services: Services;
  logger: Logger;
  /** Stops the delivery, e.g. when the worker can wait no longer. */
  signal: AbortSignal;
}

/** POSTs a finished job to its `callback_url`, a bounded number of times; never throws. */
export async function notifyCallback(job: Job, context: CallbackContext): Promise<void> {
  if (!job.callback_url) return;
  const { store, config } = context.services;
  const finished = await store.getJob(job.job_id).catch(() => undefined) ?? job;
  const result = await deliverCallback(job.callback_url, jobView(finished), {
    attempts: CALLBACK_ATTEMPTS,
    timeoutMs: CALLBACK_TIMEOUT_MS,
    backoffMs: CALLBACK_BACKOFF_MS,
    allowedHosts: config.callbackAllowedHosts,
    signal: context.signal,
  });
  const fields = { job_id: job.job_id, attempts: result.attempts };
  if (result.delivered) {
    context.logger.info("Callback delivered", { ...fields, status: result.status });
  } else context.logger.warn("Callback not delivered", { ...fields, error: result.error });
}

/** Callback deliveries: a few tries with growing pauses, never forever. */
const CALLBACK_ATTEMPTS = 4;
const CALLBACK_TIMEOUT_MS = 10_000;
const CALLBACK_BACKOFF_MS = 1_000;

/**
 * The callback deliveries of a worker's finished jobs, made outside the runs
 * (so a receiver that never answers holds no backend place) and tracked, so
 * that stopping waits for them.
 */
export class CallbackDeliveries {
  #context: Omit<CallbackContext, "signal">;
  #deliveries = new Set<Promise<void>>();
  /** Aborted when the grace period is over: deliveries still under way give up. */
  #stop = new AbortController();

  constructor(context: Omit<CallbackContext, "signal">) {
    this.#context = context;
  }

  /** Starts delivering a finished job's callback. */
  deliver(job: Job): void {
    const delivery = notifyCallback(job, { ...this.#context, signal: this.#stop.signal })
      .catch((err) =>
        this.#context.logger.warn("Callback delivery failed", {
          job_id: job.job_id,
          error: messageOf(err),
        })
      ).finally(() => this.#deliveries.delete(delivery));
    this.#deliveries.add(delivery);
  }

  /** Lets the deliveries under way go on until `graceEnds`, then stops the rest and waits for them. */
  async drain(graceEnds: Promise<void>): Promise<void> {
    if (this.#deliveries.size === 0) return;
    this.#context.logger.info("Waiting for callback deliveries", {
      deliveries: this.#deliveries.size,
    });
    await Promise.race([Promise.allSettled([...this.#deliveries]), graceEnds]);
    this.#stop.abort();
    await Promise.allSettled([...this.#deliveries]);
  }
}
