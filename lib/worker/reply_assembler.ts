/**
 * Builds one assistant message from a backend's streamed pieces: the text,
 * the reasoning, and each tool call from its pieces, however the backend cut
 * them (vLLM sends a call's name once and its arguments in pieces; Ollama
 * sends each call whole in one piece).
 */
import type { ChatMessage, ToolCall, Usage } from "../core/messages.ts";
import type { CompletionDelta } from "./completion_stream.ts";

/** A finished reply: the assistant's message, why it stopped, and its token counts when known. */
export interface AssembledReply {
  message: ChatMessage;
  /** "stop", "length", "tool_calls", …; "tool_calls" whenever the message calls tools. */
  finishReason: string;
  /** As the backend reported it; undefined when it did not. */
  usage?: Usage;
}

/** Accumulates the pieces of one streamed reply. */
export class ReplyAssembler {
  content = "";
  reasoning = "";
  #calls = new Map<number, { id?: string; name: string; arguments: string }>();
  #finishReason?: string;
  #usage?: Usage;

  /** Adds one piece of the stream. */
  add(delta: CompletionDelta): void {
    if (delta.content) this.content += delta.content;
    if (delta.reasoning) this.reasoning += delta.reasoning;
    for (const piece of delta.toolCalls ?? []) {
      const call = this.#calls.get(piece.index) ?? { name: "", arguments: "" };
      call.id ??= piece.id;
      // A name comes once; a server that repeats it in later pieces must not double it.
      if (piece.function?.name && !call.name) call.name = piece.function.name;
      if (piece.function?.arguments) call.arguments += piece.function.arguments;
      this.#calls.set(piece.index, call);
    }
    if (delta.finishReason) this.#finishReason = delta.finishReason;
    if (delta.usage) this.#usage = delta.usage;
  }

  /** The tool calls so far, in index order, each with an id (made up, once, when the backend gave none). */
  get toolCalls(): ToolCall[] {
    return [...this.#calls.entries()].sort(([a], [b]) => a - b).map(([index, call]) => {
      call.id ??= `call_${index}_${crypto.randomUUID().slice(0, 8)}`;
      return {
        id: call.id,
        type: "function" as const,
        function: { name: call.name, arguments: call.arguments },
      };
    });
  }

  /** The whole reply. */
  finish(): AssembledReply {
    const toolCalls = this.toolCalls;
    const message: ChatMessage = {
      role: "assistant",
      content: toolCalls.length > 0 && this.content === "" ? null : this.content,
    };
    if (toolCalls.length > 0) message.tool_calls = toolCalls;
    if (this.reasoning) message.reasoning_content = this.reasoning;
    const reply: AssembledReply = {
      message,
      finishReason: toolCalls.length > 0 ? "tool_calls" : this.#finishReason ?? "stop",
    };
    if (this.#usage) reply.usage = this.#usage;
    return reply;
  }
}
