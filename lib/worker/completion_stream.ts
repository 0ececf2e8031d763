/** Reads an OpenAI-compatible backend's streamed reply (server-sent events) as it arrives. */
import type { Usage } from "../core/messages.ts";

/** How much of a bad data line an error message quotes. */
const QUOTE_CHARS = 200;

/** A piece of a tool call, as a stream carries it: `index` says which call it belongs to. */
export interface DeltaToolCall {
  index: number;
  id?: string;
  type?: string;
  function?: { name?: string; arguments?: string };
}

/** What one event of a streamed reply adds, as far as the gateway uses it. */
export interface CompletionDelta {
  content?: string;
  /** Reasoning text: vLLM's and Ollama's `reasoning`, or the older `reasoning_content`. */
  reasoning?: string;
  toolCalls?: DeltaToolCall[];
  finishReason?: string;
  usage?: Usage;
}

/** Yields what each event of an OpenAI-compatible server-sent-events stream adds, until `[DONE]`. */
export async function* readCompletionEvents(
  body: ReadableStream<Uint8Array>,
): AsyncGenerator<CompletionDelta> {
  for await (const data of sseData(body)) {
    if (data === "[DONE]") return;
    const delta = parseEvent(data);
    if (delta) yield delta;
  }
}

/** Yields the text of each delta in an OpenAI-compatible server-sent-events stream. */
export async function* readCompletionStream(
  body: ReadableStream<Uint8Array>,
): AsyncGenerator<string> {
  for await (const delta of readCompletionEvents(body)) {
    if (delta.content) yield delta.content;
  }
}

function parseEvent(data: string): CompletionDelta | undefined {
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
  const chunk = event as {
    choices?: {
      delta?: {
        content?: unknown;
        reasoning?: unknown;
        reasoning_content?: unknown;
        tool_calls?: unknown;
      };
      finish_reason?: unknown;
    }[];
    usage?: unknown;
  };
  const choice = chunk.choices?.[0];
  const delta: CompletionDelta = {};
  const content = choice?.delta?.content;
  if (typeof content === "string" && content) delta.content = content;
  const reasoning = choice?.delta?.reasoning_content ?? choice?.delta?.reasoning;
  if (typeof reasoning === "string" && reasoning) delta.reasoning = reasoning;
  const toolCalls = toolCallPieces(choice?.delta?.tool_calls);
  if (toolCalls.length > 0) delta.toolCalls = toolCalls;
  if (typeof choice?.finish_reason === "string") delta.finishReason = choice.finish_reason;
  const usage = usageOf(chunk.usage);
  if (usage) delta.usage = usage;
  return delta;
}

/** The tool call pieces of a delta; a piece without an index is placed by its position. */
function toolCallPieces(value: unknown): DeltaToolCall[] {
  if (!Array.isArray(value)) return [];
  return value.flatMap((raw, position): DeltaToolCall[] => {
    if (typeof raw !== "object" || raw === null) return [];
    const call = raw as Record<string, unknown>;
    const fn =
      (typeof call.function === "object" && call.function !== null ? call.function : {}) as Record<
        string,
        unknown
      >;
    const piece: DeltaToolCall = {
      index: typeof call.index === "number" ? call.index : position,
    };
    if (typeof call.id === "string" && call.id) piece.id = call.id;
    if (typeof call.type === "string") piece.type = call.type;
    const name = typeof fn.name === "string" ? fn.name : undefined;
    // Some servers send arguments as an object rather than JSON text.
    const args = typeof fn.arguments === "string"
      ? fn.arguments
      : fn.arguments !== undefined && fn.arguments !== null
      ? JSON.stringify(fn.arguments)
      : undefined;
    if (name !== undefined || args !== undefined) {
      piece.function = {};
      if (name !== undefined) piece.function.name = name;
      if (args !== undefined) piece.function.arguments = args;
    }
    return [piece];
  });
}

/** A usage object with whole token counts, or undefined. */
export function usageOf(value: unknown): Usage | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const { prompt_tokens, completion_tokens, total_tokens } = value as Record<string, unknown>;
  if (typeof prompt_tokens !== "number" || typeof completion_tokens !== "number") return undefined;
  return {
    prompt_tokens,
    completion_tokens,
    total_tokens: typeof total_tokens === "number"
      ? total_tokens
      : prompt_tokens + completion_tokens,
  };
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
