/** OpenAI's response objects, as the gateway sends them: `chat.completion`, its stream chunks, the model list. */

/** OpenAI's `chat.completion` object, the reply to a non-streaming request. */
export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: {
    index: number;
    message: { role: "assistant"; content: string };
    finish_reason: string;
    logprobs: null;
  }[];
}

/** Options for {@linkcode completionObject}. */
export interface CompletionObjectOptions {
  id: string;
  model: string;
  content: string;
  /** Epoch seconds; default now. */
  created?: number;
  /** Default `"stop"`. */
  finishReason?: string;
}

/** Builds the `chat.completion` object for a finished reply. */
export function completionObject(options: CompletionObjectOptions): ChatCompletion {
  return {
    id: options.id,
    object: "chat.completion",
    created: options.created ?? nowSeconds(),
    model: options.model,
    choices: [{
      index: 0,
      message: { role: "assistant", content: options.content },
      finish_reason: options.finishReason ?? "stop",
      logprobs: null,
    }],
  };
}

/** The part of a reply one stream chunk carries. */
export interface ChunkDelta {
  role?: "assistant";
  content?: string;
}

/** OpenAI's `chat.completion.chunk` object, one event of a streaming reply. */
export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  choices: {
    index: number;
    delta: ChunkDelta;
    finish_reason: string | null;
    logprobs: null;
  }[];
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
  return {
    id: options.id,
    object: "chat.completion.chunk",
    created: options.created,
    model: options.model,
    choices: [{
      index: 0,
      delta: { ...options.delta },
      finish_reason: options.finishReason ?? null,
      logprobs: null,
    }],
  };
}

/** The body of `GET /v1/models`, with where its list came from (not in OpenAI's shape; clients ignore it). */
export interface ModelList {
  object: "list";
  data: { id: string; object: "model"; created: number; owned_by: string }[];
  /** "workers": what live workers' backends serve; "configured_defaults": no worker is live. */
  catalogue: string;
}

/** Builds the `GET /v1/models` body; a model's `created` (epoch seconds) defaults to now. */
export function modelList(
  models: readonly { id: string; owned_by: string; created?: number }[],
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
    })),
    catalogue: options.catalogue,
  };
}

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}
