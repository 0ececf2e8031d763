/**
 * Anthropic's event stream for a reply that grows: `message_start`, then
 * each content block (`content_block_start`, its `text_delta`,
 * `thinking_delta` or `input_json_delta` pieces, `content_block_stop`), then
 * `message_delta` with the stop reason and token counts, and `message_stop`.
 * The encoder only turns the reply so far into events; the route writes them.
 */
import { ApiError } from "./errors.ts";
import {
  type AnthropicUsage,
  type FinalReply,
  possibleStopChars,
  toolUseBlock,
} from "./anthropic_objects.ts";

/** One event of the stream; its `type` is also the SSE event's name. */
export interface StreamEvent {
  type: string;
  [field: string]: unknown;
}

/** Options for {@linkcode MessageStreamEncoder}. */
export interface MessageStreamOptions {
  id: string;
  model: string;
  /** Whether reasoning is sent, as thinking blocks. */
  showThinking: boolean;
  /**
   * Stop sequences the backend keeps at the end of its text: a possible start
   * of one is held back until the text goes on (see `finalReply`).
   */
  heldStops: readonly string[];
  /** The job, named when a stream cannot go on. */
  jobId: string;
}

/** Turns the states of a reply into Anthropic's stream events, each piece once. */
export class MessageStreamEncoder {
  readonly #options: MessageStreamOptions;
  #index = 0;
  #open?: "text" | "thinking";
  #sent = { text: "", reasoning: "" };

  constructor(options: MessageStreamOptions) {
    this.#options = options;
  }

  /** The first event: the message, with no content yet and the input tokens as far as known. */
  start(usage: AnthropicUsage): StreamEvent[] {
    return [{
      type: "message_start",
      message: {
        id: this.#options.id,
        type: "message",
        role: "assistant",
        model: this.#options.model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage,
      },
    }];
  }

  /**
   * Events for what the reply gained: its text so far and its reasoning so
   * far. A retried attempt starts again from nothing: nothing is sent until
   * it passes what was; one that says something else cannot be taken back,
   * and ends the stream with an error.
   */
  progress(text: string, allReasoning: string): StreamEvent[] {
    const reasoning = this.#options.showThinking ? allReasoning : "";
    const behind = (now: string, before: string) =>
      now.length < before.length && before.startsWith(now);
    if (
      behind(text, this.#sent.text) ||
      (text === this.#sent.text && behind(reasoning, this.#sent.reasoning))
    ) return [];
    const shown = text.slice(0, text.length - possibleStopChars(text, this.#options.heldStops));
    return this.#pass(shown.length >= this.#sent.text.length ? shown : this.#sent.text, reasoning);
  }

  /** The last events: what is left of the reply, its tool calls, why it stopped, its token counts. */
  finish(reply: FinalReply): StreamEvent[] {
    const events = this.#pass(reply.text, reply.reasoning);
    if (this.#index === 0 && reply.toolCalls.length === 0) events.push(...this.#openBlock("text"));
    events.push(...this.#closeBlock());
    for (const call of reply.toolCalls) {
      const { input, ...block } = toolUseBlock(call) as {
        type: "tool_use";
        input: Record<string, unknown>;
      };
      const index = this.#index++;
      events.push(
        { type: "content_block_start", index, content_block: { ...block, input: {} } },
        {
          type: "content_block_delta",
          index,
          delta: { type: "input_json_delta", partial_json: JSON.stringify(input) },
        },
        { type: "content_block_stop", index },
      );
    }
    events.push(
      {
        type: "message_delta",
        delta: { stop_reason: reply.stopReason, stop_sequence: reply.stopSequence },
        usage: reply.usage,
      },
      { type: "message_stop" },
    );
    return events;
  }

  #pass(text: string, allReasoning: string): StreamEvent[] {
    // Reasoning not shown is not followed either: only what was sent must hold.
    const reasoning = this.#options.showThinking ? allReasoning : "";
    const sent = this.#sent;
    if (!text.startsWith(sent.text) || !reasoning.startsWith(sent.reasoning)) {
      throw restarted(this.#options.jobId);
    }
    const events: StreamEvent[] = [];
    const thinking = reasoning.slice(sent.reasoning.length);
    if (thinking) {
      events.push(...this.#openBlock("thinking"), {
        type: "content_block_delta",
        index: this.#index - 1,
        delta: { type: "thinking_delta", thinking },
      });
    }
    sent.reasoning = reasoning;
    const more = text.slice(sent.text.length);
    if (more) {
      events.push(...this.#openBlock("text"), {
        type: "content_block_delta",
        index: this.#index - 1,
        delta: { type: "text_delta", text: more },
      });
    }
    sent.text = text;
    return events;
  }

  /** Opens a block of this kind, unless one is open: the one open before it ends. */
  #openBlock(kind: "text" | "thinking"): StreamEvent[] {
    if (this.#open === kind) return [];
    const events = this.#closeBlock();
    const content_block = kind === "text"
      ? { type: "text", text: "" }
      : { type: "thinking", thinking: "", signature: "" };
    events.push({ type: "content_block_start", index: this.#index++, content_block });
    this.#open = kind;
    return events;
  }

  #closeBlock(): StreamEvent[] {
    if (this.#open === undefined) return [];
    this.#open = undefined;
    return [{ type: "content_block_stop", index: this.#index - 1 }];
  }
}

function restarted(jobId: string): ApiError {
  return new ApiError(
    502,
    `The backend's answer was restarted after a failed attempt; read the full reply with GET /jobs/${jobId}`,
    { code: "stream_restarted", jobId },
  );
}
