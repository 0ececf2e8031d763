/**
 * A stand-in for vLLM or Ollama: a real OpenAI-compatible HTTP server on
 * 127.0.0.1 that records what it was sent and answers as told. It lists its
 * models as each does (`GET /v1/models`, owned by "vllm" or "library"), and
 * the Ollama one also answers `POST /api/show` with the model's capabilities
 * and refuses http(s) image URLs with Ollama's own error. Replies stream as
 * each streams: vLLM sends a tool call's name once and its arguments in
 * pieces, Ollama sends each call whole; both send reasoning as `reasoning`,
 * and the token counts last when `stream_options.include_usage` asks for them.
 * A reply ends at the first of the request's `stop` sequences, as each ends it.
 * Both serve `POST /v1/embeddings` for their embedding models (capability
 * "embedding"), with vectors derived from the input text alone
 * ({@linkcode standInVector}); the Ollama one refuses what Ollama refuses
 * (token ids, an empty input), and each refuses a chat with an embedding
 * model and embeddings from a chat model, as the servers do.
 */
import { type ChatMessage, messageText } from "../../lib/core/messages.ts";

/** One request the stand-in received: the whole body. */
export interface RecordedRequest {
  model: string;
  messages: ChatMessage[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  temperature?: number;
  max_tokens?: number;
  [field: string]: unknown;
}

/** A tool call the stand-in makes, as its model would. */
export interface StandInToolCall {
  name: string;
  /** JSON text. */
  arguments: string;
}

/**
 * What the stand-in answers: a reply (text, and optionally reasoning shown
 * before it and tool calls after it), or an HTTP error.
 */
export type StandInAnswer =
  | { reply: string; reasoning?: string; toolCalls?: StandInToolCall[]; pauseMs?: number }
  | { status: number; message: string };

/** Which server the stand-in behaves like. */
export type StandInKind = "vllm" | "ollama";

/** A model the stand-in serves; its capabilities default to chat only. */
export interface StandInModel {
  id: string;
  /** Ollama's names; "embedding" makes it an embedding model on either kind. */
  capabilities?: string[];
  /** The length of an embedding model's vectors; default 8. */
  dimensions?: number;
}

/** Options for {@linkcode startStandInLlm}. */
export interface StandInOptions {
  /** Name used in replies, e.g. "vllm". */
  name: string;
  /** Default: the name when it is "ollama", else "vllm". */
  kind?: StandInKind;
  /**
   * The models it lists; a chat for another model gets the server's 404.
   * Default one model, `<name>-model`.
   */
  models?: StandInModel[];
  /** Decides the answer; default echoes the last user message. */
  answer?: (request: RecordedRequest) => StandInAnswer | Promise<StandInAnswer>;
  /** Sent back to a request without this bearer token as a 401, as a server with an API key does. */
  apiKey?: string;
}

/** A running stand-in backend. */
export interface StandInLlm {
  /** The base URL to configure, ending in /v1. */
  readonly baseUrl: string;
  readonly kind: StandInKind;
  /** Chat completion requests, in order. */
  readonly requests: RecordedRequest[];
  /** Embeddings requests, in order: the whole body. */
  readonly embeddingRequests: Record<string, unknown>[];
  /** Models asked about with `POST /api/show`, in order. */
  readonly shown: string[];
  /** How many times `GET /v1/models` was asked. */
  readonly listings: number;
  stop(): Promise<void>;
}

/** What Ollama's OpenAI layer answers to an http(s) image URL (openai/openai.go). */
export const OLLAMA_IMAGE_URL_ERROR =
  "image URLs are not currently supported, please use base64 encoded data instead";

/** The default answer: "<name> says: <last user text>". */
export function echoAnswer(name: string) {
  return (request: RecordedRequest): StandInAnswer => {
    const last = request.messages.at(-1);
    const text = last ? messageText(last) : "";
    return { reply: `${name} says: ${text}` };
  };
}

/**
 * The echo, streamed with `pauseMs` between pieces: for tests that check a
 * reply reaches the client in several pieces, with pauses far longer than
 * the gateway's own write and read intervals even on a busy machine.
 */
export function slowEchoAnswer(name: string, pauseMs = 150) {
  const echo = echoAnswer(name);
  return (request: RecordedRequest): StandInAnswer => ({ ...echo(request), pauseMs });
}

/** Starts a stand-in LLM server on a free loopback port. */
export function startStandInLlm(options: StandInOptions): StandInLlm {
  const kind = options.kind ?? (options.name === "ollama" ? "ollama" : "vllm");
  const models = options.models ?? [{ id: `${options.name}-model` }];
  const requests: RecordedRequest[] = [];
  const embeddingRequests: Record<string, unknown>[] = [];
  const shown: string[] = [];
  let listings = 0;
  const answer = options.answer ?? echoAnswer(options.name);
  const created = Math.floor(Date.now() / 1000) - 3600;

  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const path = new URL(req.url).pathname;
    if (options.apiKey && req.headers.get("authorization") !== `Bearer ${options.apiKey}`) {
      return openAiError(401, "Unauthorized", "AuthenticationError");
    }
    if (req.method === "GET" && path === "/v1/models") {
      listings++;
      return Response.json({
        object: "list",
        data: models.map((m) => ({
          id: m.id,
          object: "model",
          created,
          owned_by: kind === "ollama" ? "library" : "vllm",
        })),
      });
    }
    if (kind === "ollama" && req.method === "POST" && path === "/api/show") {
      return showModel(await req.json().catch(() => undefined));
    }
    if (req.method === "POST" && path === "/v1/embeddings") {
      const body = await req.json() as Record<string, unknown>;
      embeddingRequests.push(body);
      return embed(kind, models, body);
    }
    if (req.method !== "POST" || path !== "/v1/chat/completions") {
      return Response.json({ error: { message: `No route ${req.method} ${path}` } }, {
        status: 404,
      });
    }
    const body = await req.json() as RecordedRequest;
    requests.push(body);
    const model = models.find((m) => m.id === body.model);
    if (!model) return unknownModel(body.model);
    if (!(model.capabilities ?? ["completion"]).includes("completion")) {
      return kind === "ollama"
        ? openAiError(400, `"${model.id}" does not support chat`, "api_error")
        : openAiError(400, "The model does not support Chat Completions API", "BadRequestError");
    }
    if (kind === "ollama" && hasImageUrl(body.messages)) {
      return openAiError(400, OLLAMA_IMAGE_URL_ERROR, "invalid_request_error");
    }
    if (kind === "vllm" && body.stream_options && !body.stream) {
      return openAiError(
        400,
        "Stream options can only be defined when `stream=True`.",
        "BadRequestError",
      );
    }
    const answered = await answer(body);
    if ("status" in answered) return openAiError(answered.status, answered.message, "server_error");
    const result = endAtStop(kind, body, answered);
    const usage = countUsage(body.messages, result);
    if (body.stream) {
      return streamedReply(
        kind,
        body.model,
        result,
        body.stream_options?.include_usage ? usage : undefined,
      );
    }
    const calls = toolCalls(kind, result.toolCalls ?? []);
    return Response.json({
      id: `chatcmpl-${requests.length}`,
      object: "chat.completion",
      created: Math.floor(Date.now() / 1000),
      model: body.model,
      choices: [{
        index: 0,
        message: {
          role: "assistant",
          content: result.reply === "" && calls.length > 0 ? null : result.reply,
          ...(result.reasoning ? { reasoning: result.reasoning } : {}),
          ...(calls.length > 0 ? { tool_calls: calls } : {}),
        },
        finish_reason: calls.length > 0 ? "tool_calls" : "stop",
      }],
      usage,
    });
  });

  /** Ollama's `POST /api/show` (server/routes.go ShowHandler). */
  function showModel(body: { model?: unknown; name?: unknown } | undefined): Response {
    if (body === undefined) {
      return Response.json({ error: "missing request body" }, { status: 400 });
    }
    const name = body.model || body.name;
    if (typeof name !== "string" || !name) {
      return Response.json({ error: "model is required" }, { status: 400 });
    }
    shown.push(name);
    const model = models.find((m) => m.id === name);
    if (!model) return Response.json({ error: `model '${name}' not found` }, { status: 404 });
    return Response.json({
      license: "",
      modelfile: `FROM ${name}`,
      parameters: "",
      template: "{{ .Prompt }}",
      details: { format: "gguf", family: "llama", parameter_size: "8B" },
      model_info: {},
      capabilities: model.capabilities ?? ["completion"],
      modified_at: new Date(created * 1000).toISOString(),
    });
  }

  function unknownModel(model: string): Response {
    return kind === "ollama"
      ? openAiError(404, `model "${model}" not found, try pulling it first`, "api_error")
      : openAiError(404, `The model \`${model}\` does not exist.`, "NotFoundError");
  }

  let stopped: Promise<void> | undefined;
  return {
    baseUrl: `http://127.0.0.1:${server.addr.port}/v1`,
    kind,
    requests,
    embeddingRequests,
    shown,
    get listings() {
      return listings;
    },
    stop: () => stopped ??= server.shutdown(),
  };
}

/**
 * The reply cut at the first of the request's `stop` sequences, as servers
 * cut it: without the sequence, or with it when vLLM is asked for it with
 * `include_stop_str_in_output`. A reply cut short makes no tool calls.
 */
function endAtStop<T extends { reply: string; toolCalls?: StandInToolCall[] }>(
  kind: StandInKind,
  body: RecordedRequest,
  answer: T,
): T {
  const stops = typeof body.stop === "string"
    ? [body.stop]
    : Array.isArray(body.stop)
    ? body.stop as string[]
    : [];
  const hits = stops.map((stop) => ({ stop, at: answer.reply.indexOf(stop) }))
    .filter((hit) => hit.at !== -1).sort((a, b) => a.at - b.at);
  if (hits.length === 0) return answer;
  const { stop, at } = hits[0];
  const kept = kind === "vllm" && body.include_stop_str_in_output === true ? stop.length : 0;
  return { ...answer, reply: answer.reply.slice(0, at + kept), toolCalls: undefined };
}

/**
 * The stand-in's vector for a text (token ids stand as `tokens:1,2,3`): the
 * same for the same text, different for another, of unit length, float32 as
 * a model computes it; with `dimensions`, the first that many, normalized
 * again, as Ollama and vLLM shorten a vector.
 */
export function standInVector(text: string, length: number, dimensions = length): number[] {
  const raw = Array.from({ length }, (_, i) => {
    // FNV-1a over the position and the text: cheap, and spread enough for tests.
    let hash = 0x811c9dc5;
    for (const char of `${i}:${text}`) hash = Math.imul(hash ^ char.codePointAt(0)!, 0x01000193);
    return ((hash >>> 0) / 0x100000000) * 2 - 1;
  }).slice(0, dimensions);
  const norm = Math.hypot(...raw) || 1;
  return raw.map((x) => Math.fround(x / norm));
}

/** `POST /v1/embeddings`, as vLLM and Ollama answer it. */
function embed(kind: StandInKind, models: readonly StandInModel[], body: Record<string, unknown>) {
  const model = models.find((m) => m.id === body.model);
  if (!model) {
    return kind === "ollama"
      ? openAiError(404, `model "${body.model}" not found, try pulling it first`, "api_error")
      : openAiError(404, `The model \`${body.model}\` does not exist.`, "NotFoundError");
  }
  if (!model.capabilities?.includes("embedding")) {
    return kind === "ollama"
      ? openAiError(400, `"${model.id}" does not support embeddings`, "api_error")
      : openAiError(400, "The model does not support Embeddings API", "BadRequestError");
  }
  const format = body.encoding_format ?? "float";
  if (format !== "float" && format !== "base64") {
    return openAiError(
      400,
      `Invalid value for 'encoding_format' = ${format}. Supported values: ['float', 'base64'].`,
      "invalid_request_error",
    );
  }
  const input = body.input;
  const items = Array.isArray(input) ? input : [input];
  if (input === undefined || input === null || items.length === 0) {
    return openAiError(400, "invalid input", "invalid_request_error");
  }
  const tokens = typeof items[0] === "number" ? [items] : items;
  // Ollama's native /api/embed, behind its OpenAI layer, takes strings only.
  if (kind === "ollama" && tokens.some((item) => typeof item !== "string")) {
    return openAiError(400, "invalid input type", "api_error");
  }
  const length = model.dimensions ?? 8;
  const dimensions = typeof body.dimensions === "number" ? body.dimensions : length;
  if (dimensions < 1 || dimensions > length) {
    return openAiError(400, `dimensions must be between 1 and ${length}`, "invalid_request_error");
  }
  const texts = tokens.map((item) =>
    typeof item === "string" ? item : `tokens:${(item as number[]).join(",")}`
  );
  const promptTokens = tokens.reduce<number>(
    (sum, item) =>
      sum +
      (typeof item === "string"
        ? item.split(/\s+/).filter(Boolean).length
        : (item as unknown[]).length),
    0,
  );
  return Response.json({
    object: "list",
    data: texts.map((text, index) => {
      const vector = standInVector(text, length, dimensions);
      return {
        object: "embedding",
        index,
        embedding: format === "base64" ? float32Base64(vector) : vector,
      };
    }),
    model: model.id,
    usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
  });
}

function float32Base64(vector: readonly number[]): string {
  const bytes = new Uint8Array(new Float32Array(vector).buffer);
  return btoa(String.fromCharCode(...bytes));
}

function openAiError(status: number, message: string, type: string): Response {
  return Response.json({ error: { message, type, param: null, code: null } }, { status });
}

function hasImageUrl(messages: readonly ChatMessage[]): boolean {
  return messages.some((m) =>
    Array.isArray(m.content) &&
    m.content.some((p) => p.type === "image_url" && /^https?:/i.test(p.image_url.url))
  );
}

/** Token counts the way a server counts them, near enough: a word is a token. */
function countUsage(
  messages: readonly ChatMessage[],
  answer: { reply: string; reasoning?: string },
) {
  const words = (text: string) => text.split(/\s+/).filter(Boolean).length;
  const prompt_tokens = messages.reduce((sum, m) => sum + 3 + words(messageText(m)), 0);
  const completion_tokens = words(answer.reply) + words(answer.reasoning ?? "");
  return { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens };
}

function toolCalls(kind: StandInKind, calls: readonly StandInToolCall[]) {
  return calls.map((call, index) => ({
    id: kind === "ollama" ? `call_${index}abc${index}x0` : `chatcmpl-tool-${index}`,
    type: "function",
    function: { name: call.name, arguments: call.arguments },
  }));
}

/**
 * The reply as server-sent events, a word at a time with a short pause
 * between, as vLLM and Ollama stream: reasoning first, then text, then tool
 * calls (vLLM: the name once, the arguments in pieces; Ollama: each whole),
 * the finishing chunk, the token counts when asked for, and `[DONE]`.
 */
function streamedReply(
  kind: StandInKind,
  model: string,
  answer: { reply: string; reasoning?: string; toolCalls?: StandInToolCall[]; pauseMs?: number },
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | undefined,
): Response {
  // A word at a time, as servers stream, but in at most 40 pieces so a long echo stays quick.
  const words = (text: string) => {
    const all = text.match(/\S+\s*|\s+/g) ?? [];
    const size = Math.ceil(all.length / 40);
    return Array.from(
      { length: Math.ceil(all.length / size) },
      (_, i) => all.slice(i * size, (i + 1) * size).join(""),
    );
  };
  const encoder = new TextEncoder();
  const chunk = (fields: Record<string, unknown>) =>
    encoder.encode(
      `data: ${
        JSON.stringify({ id: "chatcmpl-1", object: "chat.completion.chunk", model, ...fields })
      }\n\n`,
    );
  const event = (delta: Record<string, unknown>, finish: string | null = null) =>
    chunk({ choices: [{ index: 0, delta, finish_reason: finish }] });
  const calls = toolCalls(kind, answer.toolCalls ?? []);
  // About 20 ms between pieces, as a model streams, but a long reply takes at most about 0.2 s.
  const pieces = words(answer.reasoning ?? "").length + words(answer.reply).length;
  const pauseMs = answer.pauseMs ?? Math.min(20, 200 / Math.max(1, pieces));
  const pause = () => new Promise((r) => setTimeout(r, pauseMs));
  const body = new ReadableStream<Uint8Array>({
    async start(controller) {
      controller.enqueue(event({ role: "assistant", content: "" }));
      for (const piece of words(answer.reasoning ?? "")) {
        await pause();
        controller.enqueue(event({ reasoning: piece }));
      }
      for (const piece of words(answer.reply)) {
        await pause();
        controller.enqueue(event({ content: piece }));
      }
      for (const [index, call] of calls.entries()) {
        await pause();
        if (kind === "ollama") {
          controller.enqueue(event({ tool_calls: [{ index, ...call }] }));
          continue;
        }
        controller.enqueue(event({
          tool_calls: [{
            index,
            id: call.id,
            type: "function",
            function: { name: call.function.name },
          }],
        }));
        const args = call.function.arguments;
        for (let at = 0; at < args.length; at += 8) {
          controller.enqueue(event({
            tool_calls: [{ index, function: { arguments: args.slice(at, at + 8) } }],
          }));
        }
      }
      controller.enqueue(event({}, calls.length > 0 ? "tool_calls" : "stop"));
      if (usage) controller.enqueue(chunk({ choices: [], usage }));
      controller.enqueue(encoder.encode("data: [DONE]\n\n"));
      controller.close();
    },
  });
  return new Response(body, { headers: { "content-type": "text/event-stream" } });
}
