/** The gateway's OpenAI-compatible surface: request parsing, response shapes, stream reading. */
import { z } from "zod";
import { type FieldProblem, invalidRequest } from "./errors.ts";
import type { CompletionParams } from "./jobs.ts";
import type { ChatMessage, ContentPart } from "./messages.ts";
import { zodProblems } from "./validation.ts";

/** Stop sequences OpenAI allows in one request. */
const MAX_STOP_SEQUENCES = 4;

/** How much of a bad data line an error message quotes. */
const QUOTE_CHARS = 200;

const textPartSchema = z.object({
  type: z.literal("text"),
  text: z.string({ error: "must be a string" }),
});

const imagePartSchema = z.object({
  type: z.literal("image_url"),
  image_url: z.object({
    url: z.string({ error: "must be a string" }).min(1, "must not be empty"),
    detail: z.string({ error: "must be a string" }).optional(),
  }, { error: "must be an object with a url string" }),
});

const partsSchema = z.array(
  z.discriminatedUnion("type", [textPartSchema, imagePartSchema], {
    error: 'must be a part of type "text" or "image_url"',
  }),
).min(1, "must hold at least one part");

// A union of string and parts would report only "no option matched"; choosing the
// schema by the value's kind keeps errors on the exact part, e.g. content[1].text.
const contentSchema = z.unknown().transform((value, ctx): string | ContentPart[] => {
  if (typeof value === "string") return value;
  if (Array.isArray(value)) {
    const result = partsSchema.safeParse(value, { reportInput: true });
    if (result.success) return result.data.map(toContentPart);
    for (const issue of result.error.issues) ctx.addIssue({ ...issue });
    return z.NEVER;
  }
  ctx.addIssue({ code: "custom", input: value, message: contentMessage(value) });
  return z.NEVER;
});

const messageSchema = z.object({
  role: z.enum(["system", "user", "assistant", "tool", "developer"], {
    error: 'must be "system", "user", "assistant" or "developer"',
  }).refine((role) => role !== "tool", "tool messages are not supported"),
  content: contentSchema,
  name: z.string({ error: "must be a string" }).optional(),
}, { error: "must be an object with role and content" });

const completionRequestSchema = z.looseObject({
  model: z.string({ error: "must be a string" }).nullish(),
  messages: z.array(messageSchema, { error: "must be an array of messages" })
    .min(1, "must hold at least one message"),
  stream: z.boolean({ error: "must be a boolean" }).nullish(),
  temperature: z.number({ error: "must be a number" })
    .min(0, "must be between 0 and 2")
    .max(2, "must be between 0 and 2")
    .nullish(),
  top_p: z.number({ error: "must be a number" })
    .min(0, "must be between 0 and 1")
    .max(1, "must be between 0 and 1")
    .nullish(),
  max_tokens: z.int({ error: "must be an integer" }).positive("must be positive").nullish(),
  max_completion_tokens: z.int({ error: "must be an integer" })
    .positive("must be positive")
    .nullish(),
  stop: z.union([
    z.string(),
    z.array(z.string()).max(MAX_STOP_SEQUENCES),
  ], { error: `must be a string or an array of at most ${MAX_STOP_SEQUENCES} strings` }).nullish(),
  stream_options: z.looseObject({}, { error: "must be an object" }).nullish(),
}, { error: "must be a JSON object" });

/** A valid `POST /v1/chat/completions` body, normalized to our message shape. */
export interface CompletionRequest {
  model?: string;
  messages: ChatMessage[];
  stream: boolean;
  params: CompletionParams;
}

/** Parses an OpenAI chat completion request body, or throws a 400 listing every problem. */
export function parseCompletionRequest(body: unknown): CompletionRequest {
  const result = completionRequestSchema.safeParse(body, { reportInput: true });
  const problems = result.success ? [] : zodProblems(result.error.issues);
  const lastRole = lastRoleProblem(body);
  if (lastRole) problems.push(lastRole);
  if (!result.success || problems.length > 0) throw invalidRequest(problems);

  const data = result.data;
  const params: CompletionParams = {};
  if (data.temperature != null) params.temperature = data.temperature;
  if (data.top_p != null) params.top_p = data.top_p;
  const maxTokens = data.max_tokens ?? data.max_completion_tokens;
  if (maxTokens != null) params.max_tokens = maxTokens;
  if (data.stop != null) params.stop = data.stop;

  const request: CompletionRequest = {
    messages: data.messages.map((m) => ({
      role: m.role === "developer" ? "system" : m.role as ChatMessage["role"],
      content: m.content,
    })),
    stream: data.stream ?? false,
    params,
  };
  if (data.model != null) request.model = data.model;
  return request;
}

// Checked on the raw body so the problem is listed even when other messages are invalid.
function lastRoleProblem(body: unknown): FieldProblem | undefined {
  const messages = (body as { messages?: unknown } | null)?.messages;
  if (!Array.isArray(messages) || messages.length === 0) return undefined;
  const last = messages.length - 1;
  const role = (messages[last] as { role?: unknown } | null)?.role;
  // A missing, unknown or tool role is already reported by the schema.
  if (role !== "system" && role !== "assistant" && role !== "developer") return undefined;
  return {
    param: `messages[${last}].role`,
    message: `must be "user": the last message is the one answered, got "${role}"`,
  };
}

function contentMessage(value: unknown): string {
  if (value === undefined) return "is required";
  if (value === null) return "must not be null: tool calls are not supported";
  return "must be a string or an array of content parts";
}

function toContentPart(
  part: z.infer<typeof textPartSchema> | z.infer<typeof imagePartSchema>,
): ContentPart {
  if (part.type === "text") return { type: "text", text: part.text };
  return { type: "image_url", image_url: { url: part.image_url.url } };
}

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

/** The body of `GET /v1/models`. */
export interface ModelList {
  object: "list";
  data: { id: string; object: "model"; created: number; owned_by: string }[];
}

/** Builds the `GET /v1/models` body; `created` is epoch seconds, default now. */
export function modelList(
  models: readonly { id: string; owned_by: string }[],
  created: number = nowSeconds(),
): ModelList {
  return {
    object: "list",
    data: models.map((m) => ({ id: m.id, object: "model", created, owned_by: m.owned_by })),
  };
}

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/** Yields the text of each delta in an OpenAI-compatible server-sent-events stream. */
export async function* readCompletionStream(
  body: ReadableStream<Uint8Array>,
): AsyncGenerator<string> {
  for await (const data of sseData(body)) {
    if (data === "[DONE]") return;
    const content = deltaContent(data);
    if (content) yield content;
  }
}

function deltaContent(data: string): string | undefined {
  let event: unknown;
  try {
    event = JSON.parse(data);
  } catch {
    throw new Error(
      `Cannot read completion stream: malformed JSON in data line: ${data.slice(0, QUOTE_CHARS)}`,
    );
  }
  if (typeof event !== "object" || event === null) return undefined;
  if ("error" in event && event.error != null) {
    throw new Error(
      `Cannot read completion stream: backend sent an error: ${errorText(event.error)}`,
    );
  }
  const content = (event as { choices?: { delta?: { content?: unknown } }[] })
    .choices?.[0]?.delta?.content;
  return typeof content === "string" ? content : undefined;
}

function errorText(error: unknown): string {
  if (typeof error === "string") return error;
  const message = (error as { message?: unknown }).message;
  return typeof message === "string" ? message : JSON.stringify(error).slice(0, QUOTE_CHARS);
}

/** Yields the data of each event: its `data:` lines joined by newlines, as the SSE spec says. */
async function* sseData(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let data: string[] = [];
  for await (const line of lines(body)) {
    if (line === "") {
      if (data.length > 0) yield data.join("\n");
      data = [];
      continue;
    }
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    if (field !== "data") continue;
    const value = colon === -1 ? "" : line.slice(colon + 1);
    data.push(value.startsWith(" ") ? value.slice(1) : value);
  }
  // Be lenient with a server that closes without the final blank line.
  if (data.length > 0) yield data.join("\n");
}

/** Yields the lines of a UTF-8 stream, ended by `\n`, `\r\n` or `\r`. */
async function* lines(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end: number;
      while ((end = buffer.search(/[\r\n]/)) !== -1) {
        // A `\r` at the end of what has arrived may be the first half of `\r\n`.
        if (buffer[end] === "\r" && end === buffer.length - 1) break;
        const skip = buffer[end] === "\r" && buffer[end + 1] === "\n" ? 2 : 1;
        yield buffer.slice(0, end);
        buffer = buffer.slice(end + skip);
      }
    }
    if (buffer.endsWith("\r")) buffer = buffer.slice(0, -1);
    if (buffer !== "") yield buffer;
  } finally {
    // Stops the download when the reader ends early, e.g. at [DONE] or on an error.
    await reader.cancel().catch(() => {});
  }
}
