/**
 * What a backend gets of a long chat. Clients such as Open WebUI re-send the
 * whole chat every turn, and the stored history grows without end; a model
 * takes only so much. The newest turns are kept, within a message count and a
 * byte budget; images in older turns go first, then the oldest turns. System
 * messages and the current turn are always kept.
 */
import { type ChatMessage, jsonBytes } from "../core/messages.ts";

/** The limits of {@linkcode fitContext}. */
export interface ContextLimits {
  /** Most messages kept besides the system messages and the current turn (`HISTORY_MAX_MESSAGES`). */
  maxMessages: number;
  /** Most JSON bytes of all messages kept, images included (`HISTORY_MAX_BYTES`). */
  maxBytes: number;
}

/** What {@linkcode fitContext} kept and dropped. */
export interface FittedContext {
  messages: ChatMessage[];
  /** Messages left out, oldest first. */
  droppedMessages: number;
  /** Images of older turns replaced by a text note. */
  droppedImages: number;
}

/** The note that stands for an image left out of an older turn. */
export const IMAGE_LEFT_OUT = "[an image from earlier in the chat, left out]";

/**
 * The messages to send: leading system messages, then the newest turns that
 * fit. A turn starts at a user message, so no reply comes without its
 * question and no tool result without its call. The current turn (from the
 * last user message on) is kept whole, even when it alone is over budget: the
 * front door has already held it to its own limits.
 */
export function fitContext(messages: readonly ChatMessage[], limits: ContextLimits): FittedContext {
  const leading = messages.findIndex((m) => m.role !== "system");
  const system = leading === -1 ? [...messages] : messages.slice(0, leading);
  const rest = leading === -1 ? [] : messages.slice(leading);
  const turns = splitTurns(rest);
  const current = turns.pop() ?? [];
  let droppedImages = 0;
  let droppedMessages = 0;

  const total = () =>
    jsonBytes(system) + jsonBytes(current) + turns.reduce((sum, t) => sum + jsonBytes(t), 0);
  const count = () => turns.reduce((sum, t) => sum + t.length, 0);

  // Older turns lose their images first, oldest first.
  for (let i = 0; i < turns.length && total() > limits.maxBytes; i++) {
    const { turn, removed } = withoutImages(turns[i]);
    turns[i] = turn;
    droppedImages += removed;
  }
  while (turns.length > 0 && (total() > limits.maxBytes || count() > limits.maxMessages)) {
    droppedMessages += turns.shift()!.length;
  }
  return {
    messages: [...system, ...turns.flat(), ...current],
    droppedMessages,
    droppedImages,
  };
}

/** Splits messages into turns, each from a user message to the next; anything before the first user message stands alone. */
function splitTurns(messages: readonly ChatMessage[]): ChatMessage[][] {
  const turns: ChatMessage[][] = [];
  for (const message of messages) {
    if (message.role === "user" || turns.length === 0) turns.push([message]);
    else turns.at(-1)!.push(message);
  }
  // A system message in the middle of the chat belongs to the turn it sits in.
  return turns;
}

function withoutImages(turn: ChatMessage[]): { turn: ChatMessage[]; removed: number } {
  let removed = 0;
  const stripped = turn.map((message) => {
    if (!Array.isArray(message.content)) return message;
    const images = message.content.filter((p) => p.type === "image_url").length;
    if (images === 0) return message;
    removed += images;
    return {
      ...message,
      content: message.content.map((part) =>
        part.type === "image_url" ? { type: "text" as const, text: IMAGE_LEFT_OUT } : part
      ),
    };
  });
  return { turn: stripped, removed };
}
