/** OpenAI's response objects, as the gateway sends them: `chat.completion`, its stream chunks, the model list. */

import type { ChatMessage, ToolCall, Usage } from "../core/messages.ts";

/** The assistant's message of a `chat.completion`, reasoning shown under both names clients read. */
export interface CompletionMessage {
  role: "assistant";
  content: string | null;
  tool_calls?: ToolCall[];
  reasoning_content?: string;
  reasoning?: string;
}

/** OpenAI's `chat.completion` object, the reply to a non-streaming request. */
export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: {
    index: number;
    message: CompletionMessage;
    finish_reason: string;
    logprobs: null;
  }[];
  usage?: Usage;
}

/** Options for {@linkcode completionObject}. */
export interface CompletionObjectOptions {
  id: string;
  model: string;
  /** The reply's text; or give the whole `message`. */
  content?: string;
  /** The assistant's message, with its tool calls and reasoning. */
  message?: ChatMessage;
  /** Epoch seconds; default now. */
  created?: number;
  /** Default `"stop"`. */
  finishReason?: string;
  usage?: Usage;
}

/** Builds the `chat.completion` object for a finished reply. */
export function completionObject(options: CompletionObjectOptions): ChatCompletion {
  const object: ChatCompletion = {
    id: options.id,
    object: "chat.completion",
    created: options.created ?? nowSeconds(),
    model: options.model,
    choices: [{
      index: 0,
      message: completionMessage(
        options.message ?? {
          role: "assistant",
          content: options.content ?? "",
        },
      ),
      finish_reason: options.finishReason ?? "stop",
      logprobs: null,
    }],
  };
  if (options.usage) object.usage = options.usage;
  return object;
}

function completionMessage(message: ChatMessage): CompletionMessage {
  const content = message.content === null || typeof message.content === "string"
    ? message.content
    : message.content.map((p) => p.type === "text" ? p.text : "").join("");
  const shown: CompletionMessage = { role: "assistant", content };
  if (message.tool_calls?.length) shown.tool_calls = message.tool_calls;
  if (message.reasoning_content) {
    shown.reasoning_content = message.reasoning_content;
    shown.reasoning = message.reasoning_content;
  }
  return shown;
}

/** One piece of a tool call in a stream chunk: the whole call, at its index. */
export interface ChunkToolCall extends ToolCall {
  index: number;
}

/** The part of a reply one stream chunk carries. */
export interface ChunkDelta {
  role?: "assistant";
  content?: string;
  /** Reasoning text; the chunk carries it as both `reasoning_content` and `reasoning`. */
  reasoning?: string;
  tool_calls?: ChunkToolCall[];
}

/** OpenAI's `chat.completion.chunk` object, one event of a streaming reply. */
export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  choices: {
    index: number;
    delta: Omit<ChunkDelta, "reasoning"> & { reasoning_content?: string; reasoning?: string };
    finish_reason: string | null;
    logprobs: null;
  }[];
  usage?: Usage;
}

/** Options for {@linkcode chunkObject}. */
export interface ChunkObjectOptions {
  id: string;
  model: string;
  /** Epoch seconds; the same for every chunk of one reply. */
  created: number;
  delta: ChunkDelta;
  /** `null` (the default) until the last chunk. */
  finishReason?: string | null;
}

/** Builds one `chat.completion.chunk` object of a streaming reply. */
export function chunkObject(options: ChunkObjectOptions): ChatCompletionChunk {
  const { reasoning, ...rest } = options.delta;
  const delta: ChatCompletionChunk["choices"][number]["delta"] = { ...rest };
  if (reasoning !== undefined) {
    delta.reasoning_content = reasoning;
    delta.reasoning = reasoning;
  }
  return {
    id: options.id,
    object: "chat.completion.chunk",
    created: options.created,
    model: options.model,
    choices: [{
      index: 0,
      delta,
      finish_reason: options.finishReason ?? null,
      logprobs: null,
    }],
  };
}

/** The chunk OpenAI sends last when `stream_options.include_usage` is set: no choices, the token counts. */
export function usageChunk(
  options: { id: string; model: string; created: number; usage: Usage },
): ChatCompletionChunk {
  return {
    id: options.id,
    object: "chat.completion.chunk",
    created: options.created,
    model: options.model,
    choices: [],
    usage: options.usage,
  };
}

/** One entry of `GET /v1/models`. */
export interface ModelObject {
  id: string;
  object: "model";
  created: number;
  owned_by: string;
  /**
   * What it can do, in Ollama's names ("completion", "embedding", "vision",
   * …), so a client can tell an embedding model (not in OpenAI's shape; its
   * clients ignore it).
   */
  capabilities?: string[];
}

/** The body of `GET /v1/models`, with where its list came from (not in OpenAI's shape; clients ignore it). */
export interface ModelList {
  object: "list";
  data: ModelObject[];
  /** "workers": what live workers' backends serve; "configured_defaults": no worker is live. */
  catalogue: string;
}

/** Builds the `GET /v1/models` body; a model's `created` (epoch seconds) defaults to now. */
export function modelList(
  models: readonly { id: string; owned_by: string; created?: number; capabilities?: string[] }[],
  options: { catalogue: string; now?: number },
): ModelList {
  const now = options.now ?? nowSeconds();
  return {
    object: "list",
    data: models.map((m) => ({
      id: m.id,
      object: "model",
      created: m.created ?? now,
      owned_by: m.owned_by,
      ...(m.capabilities ? { capabilities: [...m.capabilities] } : {}),
    })),
    catalogue: options.catalogue,
  };
}

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}
