/** The one call every backend shares: OpenAI-compatible `POST {baseUrl}/chat/completions`. */
import type { Backend } from "../core/backends.ts";
import { errorMessage } from "../core/error_message.ts";
import type { CompletionParams } from "../core/jobs.ts";
import type { ChatMessage } from "../core/messages.ts";
import { describeUrl, shorten } from "../core/text.ts";
import { readCompletionStream } from "./completion_stream.ts";

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
  timeoutMs: number;
  /** Aborts the call, e.g. when the worker shuts down. */
  signal?: AbortSignal;
  /** Sampling settings passed through as they are. */
  params?: CompletionParams;
  /**
   * Asks the backend to stream, and is called with the whole reply so far
   * each time a piece arrives.
   */
  onText?: (soFar: string) => void;
}

/** Sends messages to a backend and returns the assistant's reply. */
export async function chatCompletion(
  backend: Backend,
  messages: readonly ChatMessage[],
  options: ChatCompletionOptions,
): Promise<ChatMessage> {
  const url = `${backend.baseUrl}/chat/completions`;
  const shownUrl = describeUrl(url);
  /** Error text from fetch quotes the URL it was given, credentials and all. */
  const scrub = (text: string) => shorten(text.replaceAll(url, shownUrl), 500);
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
        stream: options.onText !== undefined,
      }),
      signal: options.signal
        ? AbortSignal.any([options.signal, AbortSignal.timeout(options.timeoutMs)])
        : AbortSignal.timeout(options.timeoutMs),
    });
  } catch (err) {
    if (options.signal?.aborted) throw err;
    if (err instanceof Error && err.name === "TimeoutError") {
      throw new BackendError(
        `Backend "${backend.name}" did not answer within ${options.timeoutMs / 1000} s`,
        { detail: `no answer from ${shownUrl}` },
      );
    }
    throw new BackendError(
      `Cannot reach backend "${backend.name}" (check ${backend.baseUrlVariable} on the worker)`,
      { detail: `${shownUrl}: ${scrub(errorMessage(err))}` },
    );
  }
  if (
    response.ok && options.onText &&
    response.headers.get("content-type")?.includes("text/event-stream")
  ) {
    return {
      role: "assistant",
      content: await readStreamedReply(backend, shownUrl, response, options.onText),
    };
  }
  const text = await response.text();
  if (!response.ok) {
    throw new BackendError(`Backend "${backend.name}" answered ${response.status}`, {
      status: response.status,
      detail: `${shownUrl} answered ${response.status}: ${upstreamMessage(text)}`,
    });
  }
  const content = parseReply(text);
  if (content === undefined) {
    throw new BackendError(
      `Backend "${backend.name}" sent a reply without choices[0].message.content`,
      { status: response.status, detail: `${shownUrl} sent: ${text.slice(0, 200)}` },
    );
  }
  return { role: "assistant", content };
}

async function readStreamedReply(
  backend: Backend,
  shownUrl: string,
  response: Response,
  onText: (soFar: string) => void,
): Promise<string> {
  let soFar = "";
  try {
    for await (const piece of readCompletionStream(response.body!)) {
      soFar += piece;
      onText(soFar);
    }
  } catch (err) {
    if (err instanceof Error && (err.name === "AbortError" || err.name === "TimeoutError")) {
      throw err;
    }
    throw new BackendError(`Backend "${backend.name}" broke off its stream`, {
      detail: `${shownUrl}: ${shorten(errorMessage(err), 500)}`,
    });
  }
  return soFar;
}

function parseReply(text: string): string | undefined {
  try {
    const content = JSON.parse(text)?.choices?.[0]?.message?.content;
    return typeof content === "string" ? content : undefined;
  } catch {
    return undefined;
  }
}

function upstreamMessage(text: string): string {
  try {
    const body = JSON.parse(text);
    const message = body?.error?.message ?? body?.error ?? body?.message;
    if (typeof message === "string") return message.slice(0, 500);
  } catch {
    // not JSON: fall through to the raw text
  }
  return text.slice(0, 500) || "(empty body)";
}
