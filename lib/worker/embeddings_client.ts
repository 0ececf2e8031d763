/**
 * The embeddings call every backend shares: OpenAI-compatible
 * `POST {baseUrl}/embeddings`, which vLLM and Ollama both serve. The vectors
 * are asked for as numbers (no `encoding_format`), which every server sends
 * (older Ollama ignores the field); a server that answers base64 anyway is
 * read too.
 */
import type { Backend } from "../core/backends.ts";
import { bytesToVectors, fromBase64, inputCount } from "../core/embeddings.ts";
import { errorMessage } from "../core/error_message.ts";
import type { CompletionParams } from "../core/jobs.ts";
import { describeUrl, shorten } from "../core/text.ts";
import { BackendError, upstreamMessage } from "./llm_client.ts";

/** Options for {@linkcode createEmbeddings}. */
export interface EmbeddingsCallOptions {
  model: string;
  /** `input`, and the other fields the client sent for the backend (`dimensions`, …). */
  params: CompletionParams;
  /**
   * The longest the backend may take: an embeddings answer comes whole, so
   * its silence lasts until it is done (`LLM_TIMEOUT_S`).
   */
  timeoutMs: number;
  /** Aborts the call, e.g. when the worker shuts down. */
  signal?: AbortSignal;
}

/** What a backend answered: one vector per input, in input order, all of one length. */
export interface EmbeddingsReply {
  vectors: ArrayLike<number>[];
  dimensions: number;
  /** The backend's token count of the input, when it gave one. */
  promptTokens?: number;
}

/** Asks a backend for the embeddings of a job's input. */
export async function createEmbeddings(
  backend: Backend,
  options: EmbeddingsCallOptions,
): Promise<EmbeddingsReply> {
  const url = `${backend.baseUrl}/embeddings`;
  const shownUrl = describeUrl(url);
  const timeout = AbortSignal.timeout(options.timeoutMs);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  let response: Response;
  let text: string;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(backend.apiKey ? { authorization: `Bearer ${backend.apiKey}` } : {}),
      },
      body: JSON.stringify({ ...options.params, model: options.model }),
      signal,
    });
    text = await response.text();
  } catch (err) {
    if (options.signal?.aborted) throw err;
    if (timeout.aborted) {
      throw new BackendError(
        `Backend "${backend.name}" did not answer the embeddings request within ${
          options.timeoutMs / 1000
        } s (LLM_TIMEOUT_S)`,
        { detail: `no answer from ${shownUrl}` },
      );
    }
    throw new BackendError(
      `Cannot reach backend "${backend.name}" (check ${backend.baseUrlVariable} on the worker)`,
      { detail: `${shownUrl}: ${shorten(errorMessage(err).replaceAll(url, shownUrl), 500)}` },
    );
  }
  if (!response.ok) {
    throw new BackendError(`Backend "${backend.name}" answered ${response.status}`, {
      status: response.status,
      detail: `${shownUrl} answered ${response.status}: ${upstreamMessage(text)}`,
    });
  }
  const expected = inputCount(options.params.input);
  const reply = readVectors(text, expected);
  if (typeof reply === "string") {
    throw new BackendError(`Backend "${backend.name}" sent embeddings the gateway cannot read`, {
      status: response.status,
      detail: `${shownUrl}: ${reply}; it sent: ${text.slice(0, 200)}`,
    });
  }
  return reply;
}

/** The vectors of an OpenAI embeddings answer in index order, or what is wrong with it. */
function readVectors(text: string, expected: number): EmbeddingsReply | string {
  let body: { data?: unknown; usage?: { prompt_tokens?: unknown } } | null;
  try {
    body = JSON.parse(text);
  } catch {
    return "not JSON";
  }
  if (!Array.isArray(body?.data)) return "no data list";
  if (body.data.length !== expected) return `${body.data.length} vectors for ${expected} inputs`;
  const vectors: (ArrayLike<number> | undefined)[] = new Array(expected);
  for (const [position, item] of body.data.entries()) {
    const { index = position, embedding } = item as { index?: unknown; embedding?: unknown };
    if (typeof index !== "number" || !(index >= 0 && index < expected) || vectors[index]) {
      return `item ${position} has a bad or repeated index`;
    }
    const vector = typeof embedding === "string" ? base64Vector(embedding) : embedding;
    if (!isVector(vector)) return `item ${position} holds no vector of finite numbers`;
    vectors[index] = vector;
  }
  const dimensions = vectors[0]!.length;
  if (vectors.some((v) => v!.length !== dimensions)) return "vectors of different lengths";
  const tokens = body.usage?.prompt_tokens;
  return {
    vectors: vectors as ArrayLike<number>[],
    dimensions,
    ...(typeof tokens === "number" && Number.isInteger(tokens) && tokens >= 0
      ? { promptTokens: tokens }
      : {}),
  };
}

function base64Vector(text: string): Float32Array | undefined {
  const bytes = fromBase64(text);
  return bytes.length % 4 === 0 ? bytesToVectors(bytes, 1, bytes.length / 4)[0] : undefined;
}

function isVector(value: unknown): value is ArrayLike<number> {
  if (value instanceof Float32Array) return value.length > 0 && value.every(Number.isFinite);
  return Array.isArray(value) && value.length > 0 &&
    value.every((x) => typeof x === "number" && Number.isFinite(x));
}
