/**
 * Anthropic's response objects, as the gateway sends them: a finished job's
 * reply as a `message` with its content blocks, why it stopped and its
 * token counts.
 */
import type { Job } from "../core/jobs.ts";
import { messageText, replyMessage, type ToolCall } from "../core/messages.ts";

/** Why a reply ended, in Anthropic's words. */
export type StopReason = "end_turn" | "max_tokens" | "stop_sequence" | "tool_use" | "refusal";

/** Anthropic's token counts; the gateway caches nothing, so the cache counts are 0. */
export interface AnthropicUsage {
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
}

/** One block of a reply's content. */
export type AnthropicContentBlock =
  | { type: "text"; text: string }
  | { type: "thinking"; thinking: string; signature: string }
  | { type: "tool_use"; id: string; name: string; input: Record<string, unknown> };

/** Anthropic's `message` object, the reply to a request that does not stream. */
export interface AnthropicMessage {
  id: string;
  type: "message";
  role: "assistant";
  model: string;
  content: AnthropicContentBlock[];
  stop_reason: StopReason | null;
  stop_sequence: string | null;
  usage: AnthropicUsage;
}

/** A finished job's reply, in Anthropic's terms. */
export interface FinalReply {
  /** The text, without the stop sequence that ended it. */
  text: string;
  reasoning: string;
  toolCalls: ToolCall[];
  stopReason: StopReason;
  stopSequence: string | null;
  usage: AnthropicUsage;
}

/** Options for {@linkcode finalReply}. */
export interface FinalReplyOptions {
  /** The request's `stop_sequences`. */
  stopSequences: readonly string[];
  /**
   * Whether the backend was asked to keep the stop sequence that ended the
   * reply at its end (vLLM's `include_stop_str_in_output`): only then can the
   * gateway tell a stop sequence from the model's own end, and remove it.
   */
  stopShown: boolean;
}

/** A succeeded job's reply: its text, reasoning and tool calls, why it stopped, its token counts. */
export function finalReply(job: Job, options: FinalReplyOptions): FinalReply {
  const reply = replyMessage(job.reply, job.reply_message);
  const toolCalls = reply.tool_calls ?? [];
  let text = messageText(reply);
  let stopSequence: string | null = null;
  const finish = job.finish_reason ?? "stop";
  if (finish === "stop" && toolCalls.length === 0 && options.stopShown) {
    stopSequence = endingStop(text, options.stopSequences) ?? null;
    if (stopSequence !== null) text = text.slice(0, text.length - stopSequence.length);
  }
  return {
    text,
    reasoning: reply.reasoning_content ?? "",
    toolCalls,
    stopReason: toolCalls.length > 0
      ? "tool_use"
      : stopSequence !== null
      ? "stop_sequence"
      : STOP_REASONS[finish] ?? "end_turn",
    stopSequence,
    usage: anthropicUsage(job.usage),
  };
}

/** OpenAI's finish reasons as Anthropic's stop reasons. */
const STOP_REASONS: Record<string, StopReason> = {
  stop: "end_turn",
  length: "max_tokens",
  tool_calls: "tool_use",
  content_filter: "refusal",
};

/** The longest stop sequence a text ends with. */
function endingStop(text: string, stops: readonly string[]): string | undefined {
  return stops.filter((s) => text.endsWith(s)).sort((a, b) => b.length - a.length)[0];
}

/**
 * How much of the end of a text may be the start of a stop sequence: held
 * back from a stream until the reply goes on or ends, so a stop sequence the
 * backend shows is never sent as text.
 */
export function possibleStopChars(text: string, stops: readonly string[]): number {
  let held = 0;
  for (const stop of stops) {
    for (let k = Math.min(stop.length, text.length); k > held; k--) {
      if (text.endsWith(stop.slice(0, k))) {
        held = k;
        break;
      }
    }
  }
  return held;
}

/** Token counts in Anthropic's names. */
export function anthropicUsage(
  usage?: { prompt_tokens: number; completion_tokens: number },
): AnthropicUsage {
  return {
    input_tokens: usage?.prompt_tokens ?? 0,
    output_tokens: usage?.completion_tokens ?? 0,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: 0,
  };
}

/**
 * A tool call's arguments as the `input` object Anthropic's clients expect.
 * Arguments that are not a JSON object (a model's mistake) arrive whole as
 * `{ "arguments": "<text>" }`, so the client sees what the model wrote.
 */
export function toolInput(args: string): Record<string, unknown> {
  if (args.trim() === "") return {};
  try {
    const value = JSON.parse(args);
    if (typeof value === "object" && value !== null && !Array.isArray(value)) return value;
  } catch {
    // not JSON: handed over as text below
  }
  return { arguments: args };
}

/** A tool call as a `tool_use` block. */
export function toolUseBlock(call: ToolCall): AnthropicContentBlock {
  return {
    type: "tool_use",
    id: call.id,
    name: call.function.name,
    input: toolInput(call.function.arguments),
  };
}

/** Options for {@linkcode messageObject}. */
export interface MessageObjectOptions {
  id: string;
  model: string;
  reply: FinalReply;
  /** Whether the reasoning is shown, as a thinking block first. */
  showThinking: boolean;
}

/** Builds the `message` object of a finished reply. */
export function messageObject(options: MessageObjectOptions): AnthropicMessage {
  const { reply } = options;
  const content: AnthropicContentBlock[] = [];
  if (options.showThinking && reply.reasoning) {
    content.push({ type: "thinking", thinking: reply.reasoning, signature: "" });
  }
  if (reply.text || reply.toolCalls.length === 0) content.push({ type: "text", text: reply.text });
  content.push(...reply.toolCalls.map(toolUseBlock));
  return {
    id: options.id,
    type: "message",
    role: "assistant",
    model: options.model,
    content,
    stop_reason: reply.stopReason,
    stop_sequence: reply.stopSequence,
    usage: reply.usage,
  };
}
