/**
 * A response as the Responses API streams it: `response.created` and
 * `response.in_progress`; each output item added, filled and done (reasoning
 * and text as they grow, function calls whole once the reply ends, as the
 * worker keeps them); then `response.completed`, `response.incomplete` or
 * `response.failed` with the whole response. Every event is numbered.
 */
import type { Job } from "../core/jobs.ts";
import { replyMessage } from "../core/messages.ts";
import {
  functionCallItem,
  itemIds,
  jobResponse,
  messageItem,
  type OutputItem,
  outputText,
  reasoningItem,
  type ResponseError,
  type ResponseFacts,
  responseObject,
} from "./responses_objects.ts";

/** One event of a response's stream. */
export interface ResponseEvent {
  type: string;
  sequence_number: number;
  [field: string]: unknown;
}

/** An output item being streamed: where it is and the text it holds so far. */
interface OpenItem {
  index: number;
  text: string;
}

/**
 * The events of one response's stream, in order. Fed the reply so far as it
 * grows and then the finished job; each call returns the events to send.
 */
export class ResponseEvents {
  #facts: ResponseFacts;
  #ids: ReturnType<typeof itemIds>;
  #sequence = 0;
  /** The output items so far, in the order they were added. */
  #items: OutputItem[] = [];
  #reasoning?: OpenItem;
  #message?: OpenItem;
  #reasoningDone = false;
  #restarted: () => Error;

  /** `restarted` makes the error for a reply that began again after a failed attempt. */
  constructor(facts: ResponseFacts, restarted: () => Error) {
    this.#facts = facts;
    this.#ids = itemIds(facts.jobId);
    this.#restarted = restarted;
  }

  /** The events that open the stream. */
  start(): ResponseEvent[] {
    const response = responseObject(this.#facts, { status: "in_progress" });
    return [
      this.#event("response.created", { response }),
      this.#event("response.in_progress", { response }),
    ];
  }

  /**
   * The events for the reply so far (its whole text and reasoning): what
   * they gained. A new attempt that begins again from nothing is waited out
   * until it passes what was sent; one that says something else cannot be
   * taken back, and throws.
   */
  progress(content: string, reasoning: string): ResponseEvent[] {
    const sentText = this.#message?.text ?? "";
    const sentReasoning = this.#reasoning?.text ?? "";
    const behind = (now: string, before: string) =>
      now.length < before.length && before.startsWith(now);
    if (behind(content, sentText) || (content === sentText && behind(reasoning, sentReasoning))) {
      return [];
    }
    if (!content.startsWith(sentText) || (!reasoning.startsWith(sentReasoning) && !this.#message)) {
      throw this.#restarted();
    }
    const events: ResponseEvent[] = [];
    // Reasoning comes before the answer; once the answer has begun, it is told with the end.
    if (reasoning.length > sentReasoning.length && !this.#message) {
      const open = this.#reasoning ??= this.#openReasoning(events);
      events.push(this.#event("response.reasoning_text.delta", {
        ...this.#at(this.#ids.reasoning, open),
        delta: reasoning.slice(open.text.length),
      }));
      open.text = reasoning;
    }
    if (content.length > sentText.length) {
      this.#closeReasoning(events);
      const open = this.#message ??= this.#openMessage(events);
      events.push(this.#event("response.output_text.delta", {
        ...this.#at(this.#ids.message, open),
        delta: content.slice(open.text.length),
        logprobs: [],
      }));
      open.text = content;
    }
    return events;
  }

  /** The events that end the stream of a job that succeeded. */
  finish(job: Job): ResponseEvent[] {
    const reply = replyMessage(job.reply, job.reply_message);
    const text = typeof reply.content === "string" ? reply.content : job.reply ?? "";
    const reasoning = reply.reasoning_content ?? "";
    const events = this.progress(text, reasoning);
    const status = job.finish_reason === "length" ? "incomplete" : "completed";
    this.#closeReasoning(events);
    if (reasoning && !this.#reasoningDone) {
      // Reasoning that came after the answer had begun: an item of its own, after it.
      this.#reasoning = this.#openReasoning(events);
      events.push(this.#event("response.reasoning_text.delta", {
        ...this.#at(this.#ids.reasoning, this.#reasoning),
        delta: reasoning,
      }));
      this.#reasoning.text = reasoning;
      this.#closeReasoning(events);
    }
    const calls = reply.tool_calls ?? [];
    if (!this.#message && calls.length === 0) this.#message = this.#openMessage(events);
    if (this.#message) {
      const open = this.#message;
      const at = this.#at(this.#ids.message, open);
      events.push(
        this.#event("response.output_text.done", { ...at, text: open.text, logprobs: [] }),
        this.#event("response.content_part.done", { ...at, part: outputText(open.text) }),
      );
      this.#done(events, open.index, messageItem(this.#ids.message, open.text, status));
    }
    calls.forEach((call, i) => {
      const id = this.#ids.call(i);
      const index = this.#add(
        events,
        functionCallItem(id, {
          ...call,
          function: { ...call.function, arguments: "" },
        }, "in_progress"),
      );
      const args = call.function.arguments;
      events.push(
        this.#event("response.function_call_arguments.delta", {
          item_id: id,
          output_index: index,
          delta: args,
        }),
        this.#event("response.function_call_arguments.done", {
          item_id: id,
          output_index: index,
          arguments: args,
          name: call.function.name,
        }),
      );
      this.#done(events, index, functionCallItem(id, call, status));
    });
    const response = { ...jobResponse(this.#facts, job), output: this.#items };
    const type = status === "incomplete" ? "response.incomplete" : "response.completed";
    events.push(this.#event(type, { response }));
    return events;
  }

  /** The event that ends the stream of a response that failed, with what it had output. */
  fail(error: ResponseError): ResponseEvent[] {
    const response = responseObject(this.#facts, { status: "failed", error, output: this.#items });
    return [this.#event("response.failed", { response })];
  }

  #openReasoning(events: ResponseEvent[]): OpenItem {
    const item = reasoningItem(this.#ids.reasoning, "");
    const index = this.#add(events, { ...item, status: "in_progress", content: [] } as OutputItem);
    const open = { index, text: "" };
    events.push(this.#event("response.content_part.added", {
      ...this.#at(this.#ids.reasoning, open),
      part: { type: "reasoning_text", text: "" },
    }));
    return open;
  }

  #closeReasoning(events: ResponseEvent[]): void {
    const open = this.#reasoning;
    if (!open || this.#reasoningDone) return;
    this.#reasoningDone = true;
    const at = this.#at(this.#ids.reasoning, open);
    const part = { type: "reasoning_text", text: open.text };
    events.push(
      this.#event("response.reasoning_text.done", { ...at, text: open.text }),
      this.#event("response.content_part.done", { ...at, part }),
    );
    this.#done(events, open.index, reasoningItem(this.#ids.reasoning, open.text));
  }

  #openMessage(events: ResponseEvent[]): OpenItem {
    const item = messageItem(this.#ids.message, "", "in_progress");
    const index = this.#add(events, { ...item, content: [] } as OutputItem);
    const open = { index, text: "" };
    events.push(this.#event("response.content_part.added", {
      ...this.#at(this.#ids.message, open),
      part: outputText(""),
    }));
    return open;
  }

  /** Adds an item to the output; returns its index. */
  #add(events: ResponseEvent[], item: OutputItem): number {
    const index = this.#items.length;
    this.#items.push(item);
    events.push(this.#event("response.output_item.added", { output_index: index, item }));
    return index;
  }

  #done(events: ResponseEvent[], index: number, item: OutputItem): void {
    this.#items[index] = item;
    events.push(this.#event("response.output_item.done", { output_index: index, item }));
  }

  #at(itemId: string, open: OpenItem) {
    return { item_id: itemId, output_index: open.index, content_index: 0 };
  }

  #event(type: string, fields: Record<string, unknown>): ResponseEvent {
    return { type, sequence_number: this.#sequence++, ...fields };
  }
}
