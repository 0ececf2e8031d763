/** The one call every backend shares: OpenAI-compatible `POST {baseUrl}/chat/completions`. */
import type { Backend } from "../core/backends.ts";
import { errorMessage } from "../core/error_message.ts";
import type { CompletionParams } from "../core/jobs.ts";
import type { ChatMessage } from "../core/messages.ts";
import { describeUrl, shorten } from "../core/text.ts";
import { readCompletionEvents, usageOf } from "./completion_stream.ts";
import { type AssembledReply, ReplyAssembler } from "./reply_assembler.ts";

/** Statuses that may succeed on a later try, though they are 4xx. */
const RETRYABLE_4XX = new Set([408, 409, 425, 429]);

/**
 * Why a backend call failed; `status` is the HTTP status when the backend
 * answered. The message names the backend and a short reason, fit for the
 * job record a client reads; `detail` holds what only the log may see: the URL
 * (without user name or password) and the backend's own words.
 */
export class BackendError extends Error {
  readonly status?: number;
  readonly detail: string;

  constructor(message: string, options: { status?: number; detail: string }) {
    super(message);
    this.name = "BackendError";
    this.status = options.status;
    this.detail = options.detail;
  }

  /** Whether trying again could help: no answer, 5xx, 429 and a few others yes; other 4xx no. */
  get retryable(): boolean {
    return this.status === undefined || this.status >= 500 || this.status < 400 ||
      RETRYABLE_4XX.has(this.status);
  }
}

/** Options for {@linkcode chatCompletion}. */
export interface ChatCompletionOptions {
  /** The model to ask for; default the backend's. */
  model?: string;
  /** The longest silence: before the backend answers, and between two pieces of its reply. */
  idleTimeoutMs: number;
  /** The longest the whole reply may take, however steadily it flows. */
  maxReplyMs: number;
  /** Aborts the call, e.g. when the worker shuts down. */
  signal?: AbortSignal;
  /** The request's other fields (sampling, tools, …), passed through as they are. */
  params?: CompletionParams;
  /** Called with the reply so far each time a piece of text or reasoning arrives. */
  onProgress?: (soFar: { content: string; reasoning: string }) => void;
}

/**
 * Sends messages to a backend and returns the assistant's reply. The backend
 * is always asked to stream (with its token counts), so one reader serves
 * every request and a long reply that keeps flowing never times out: only a
 * silence of `idleTimeoutMs` does, or a reply longer than `maxReplyMs`.
 */
export async function chatCompletion(
  backend: Backend,
  messages: readonly ChatMessage[],
  options: ChatCompletionOptions,
): Promise<AssembledReply> {
  const url = `${backend.baseUrl}/chat/completions`;
  const shownUrl = describeUrl(url);
  /** Error text from fetch quotes the URL it was given, credentials and all. */
  const scrub = (text: string) => shorten(text.replaceAll(url, shownUrl), 500);
  const clock = new SilenceClock(options.idleTimeoutMs, options.maxReplyMs);
  const signal = options.signal ? AbortSignal.any([options.signal, clock.signal]) : clock.signal;
  try {
    let response: Response;
    try {
      response = await fetch(url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          ...(backend.apiKey ? { authorization: `Bearer ${backend.apiKey}` } : {}),
        },
        body: JSON.stringify({
          ...options.params,
          model: options.model ?? backend.model,
          messages,
          stream: true,
          stream_options: { include_usage: true },
        }),
        signal,
      });
    } catch (err) {
      if (options.signal?.aborted) throw err;
      if (clock.expired) throw clock.error(backend, shownUrl);
      throw new BackendError(
        `Cannot reach backend "${backend.name}" (check ${backend.baseUrlVariable} on the worker)`,
        { detail: `${shownUrl}: ${scrub(errorMessage(err))}` },
      );
    }
    clock.heard();
    if (!response.ok) {
      const text = await response.text();
      throw new BackendError(`Backend "${backend.name}" answered ${response.status}`, {
        status: response.status,
        detail: `${shownUrl} answered ${response.status}: ${upstreamMessage(text)}`,
      });
    }
    if (!response.headers.get("content-type")?.includes("text/event-stream")) {
      // A server that does not stream answers with the whole reply at once.
      const text = await response.text();
      const reply = parseWholeReply(text);
      if (!reply) {
        throw new BackendError(`Backend "${backend.name}" sent a reply the gateway cannot read`, {
          status: response.status,
          detail: `${shownUrl} sent: ${text.slice(0, 200)}`,
        });
      }
      return reply;
    }
    return await readStreamedReply(backend, shownUrl, response, { ...options, clock });
  } catch (err) {
    if (clock.expired && !options.signal?.aborted && !(err instanceof BackendError)) {
      throw clock.error(backend, shownUrl);
    }
    throw err;
  } finally {
    clock.stop();
  }
}

/**
 * Aborts a call after a silence of `idleMs` (reset by every piece heard) or
 * once `maxMs` have passed in all.
 */
class SilenceClock {
  readonly #controller = new AbortController();
  readonly #idleMs: number;
  readonly #maxMs: number;
  #idle: ReturnType<typeof setTimeout>;
  #whole: ReturnType<typeof setTimeout>;
  #why: "silence" | "length" | undefined;

  constructor(idleMs: number, maxMs: number) {
    this.#idleMs = idleMs;
    this.#maxMs = maxMs;
    this.#idle = setTimeout(() => this.#expire("silence"), idleMs);
    this.#whole = setTimeout(() => this.#expire("length"), maxMs);
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get expired(): boolean {
    return this.#why !== undefined;
  }

  /** Something arrived: the silence starts again. */
  heard(): void {
    clearTimeout(this.#idle);
    if (!this.expired) this.#idle = setTimeout(() => this.#expire("silence"), this.#idleMs);
  }

  stop(): void {
    clearTimeout(this.#idle);
    clearTimeout(this.#whole);
  }

  error(backend: Backend, shownUrl: string): BackendError {
    return this.#why === "length"
      ? new BackendError(
        `Backend "${backend.name}" was still answering after ${
          this.#maxMs / 1000
        } s (LLM_MAX_REPLY_S)`,
        { detail: `reply from ${shownUrl} too long` },
      )
      : new BackendError(
        `Backend "${backend.name}" went silent for ${this.#idleMs / 1000} s (LLM_TIMEOUT_S)`,
        { detail: `no answer from ${shownUrl}` },
      );
  }

  #expire(why: "silence" | "length"): void {
    this.#why ??= why;
    this.#controller.abort(new DOMException(`backend ${why}`, "TimeoutError"));
  }
}

async function readStreamedReply(
  backend: Backend,
  shownUrl: string,
  response: Response,
  options: ChatCompletionOptions & { clock: SilenceClock },
): Promise<AssembledReply> {
  const reply = new ReplyAssembler();
  try {
    for await (const delta of readCompletionEvents(response.body!)) {
      options.clock.heard();
      reply.add(delta);
      if (delta.content || delta.reasoning) {
        options.onProgress?.({ content: reply.content, reasoning: reply.reasoning });
      }
    }
  } catch (err) {
    if (err instanceof Error && (err.name === "AbortError" || err.name === "TimeoutError")) {
      throw err;
    }
    if (options.clock.expired || options.signal?.aborted) throw err;
    throw new BackendError(`Backend "${backend.name}" broke off its stream`, {
      detail: `${shownUrl}: ${shorten(errorMessage(err), 500)}`,
    });
  }
  return reply.finish();
}

/** A non-streamed `chat.completion` body as a reply, or undefined when it is not one. */
function parseWholeReply(text: string): AssembledReply | undefined {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return undefined;
  }
  const choice = (body as { choices?: unknown[] } | null)?.choices?.[0] as
    | { message?: Record<string, unknown>; finish_reason?: unknown }
    | undefined;
  const message = choice?.message;
  if (!message || (typeof message.content !== "string" && !Array.isArray(message.tool_calls))) {
    return undefined;
  }
  const reply = new ReplyAssembler();
  reply.add({
    content: typeof message.content === "string" ? message.content : undefined,
    reasoning: typeof message.reasoning_content === "string"
      ? message.reasoning_content
      : typeof message.reasoning === "string"
      ? message.reasoning
      : undefined,
    toolCalls: Array.isArray(message.tool_calls)
      ? message.tool_calls.map((call: Record<string, unknown>, index: number) => ({
        index,
        id: typeof call.id === "string" ? call.id : undefined,
        function: call.function as { name?: string; arguments?: string },
      }))
      : undefined,
    finishReason: typeof choice?.finish_reason === "string" ? choice.finish_reason : undefined,
    usage: usageOf((body as { usage?: unknown }).usage),
  });
  return reply.finish();
}

/** The message of a backend's error body (OpenAI's, Ollama's or plain text), shortened: for the log. */
export function upstreamMessage(text: string): string {
  try {
    const body = JSON.parse(text);
    const message = body?.error?.message ?? body?.error ?? body?.message;
    if (typeof message === "string") return message.slice(0, 500);
  } catch {
    // not JSON: fall through to the raw text
  }
  return text.slice(0, 500) || "(empty body)";
}
