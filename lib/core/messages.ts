/** Chat messages in OpenAI's format, as stored in a conversation and sent to a backend. */

/** A text part of a message. */
export interface TextPart {
  type: "text";
  text: string;
}

/** An image part of a message; `url` is an http(s) or data: URL. */
export interface ImagePart {
  type: "image_url";
  image_url: { url: string };
}

/** One part of a multi-part message. */
export type ContentPart = TextPart | ImagePart;

/** An assistant's call of one of the client's tools; `arguments` is JSON text. */
export interface ToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

/** One message of a conversation, in OpenAI's shape. */
export interface ChatMessage {
  role: "system" | "user" | "assistant" | "tool";
  /** Text, content parts, or null for an assistant message that only calls tools. */
  content: string | ContentPart[] | null;
  /** An assistant's calls of the client's tools. */
  tool_calls?: ToolCall[];
  /** On a tool message: the call it answers. */
  tool_call_id?: string;
  /** A participant's name, as OpenAI allows on any message. */
  name?: string;
  /** An assistant's reasoning, when the backend shows it (vLLM's and Ollama's `reasoning`). */
  reasoning_content?: string;
}

/** Tokens a completion took, as OpenAI reports them. */
export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** The user's message: plain text, or content parts when it carries images. */
export function userMessage(text: string, imageUrls: readonly string[] = []): ChatMessage {
  if (imageUrls.length === 0) return { role: "user", content: text };
  return {
    role: "user",
    content: [
      { type: "text", text },
      ...imageUrls.map((url): ImagePart => ({ type: "image_url", image_url: { url } })),
    ],
  };
}

/** Whether a message carries at least one image. */
export function hasImage(message: ChatMessage): boolean {
  return Array.isArray(message.content) && message.content.some((p) => p.type === "image_url");
}

/**
 * Rewrites messages for a backend that cannot see images: each image part
 * becomes a short text note, so a text model still knows an image was there.
 */
export function withoutImages(messages: readonly ChatMessage[]): ChatMessage[] {
  return messages.map((message) => {
    if (!Array.isArray(message.content)) return message;
    const text = message.content
      .map((part) =>
        part.type === "text" ? part.text : `[image: ${describeImage(part.image_url.url)}]`
      )
      .join("\n");
    return { ...message, content: text };
  });
}

/** The text of a message: its string, or its text parts joined; images and null give nothing. */
export function messageText(message: Pick<ChatMessage, "content">): string {
  if (typeof message.content === "string") return message.content;
  if (!Array.isArray(message.content)) return "";
  return message.content.map((part) => part.type === "text" ? part.text : "").join("");
}

function describeImage(url: string): string {
  return url.startsWith("data:") || url.startsWith("gateway-blob:") ? "inline image" : url;
}

/** The text a job record keeps of an assistant's reply: its content, as JSON when in parts. */
export function replyText(reply: ChatMessage): string {
  if (reply.content === null) return "";
  return typeof reply.content === "string" ? reply.content : JSON.stringify(reply.content);
}

/** A reply message as a job record keeps it beside `reply`: without its text when that is a string. */
export type StoredReplyMessage = Omit<ChatMessage, "content"> & {
  content?: ChatMessage["content"];
};

/**
 * What a job record keeps of a reply besides its text (`replyText`): the
 * message, when it holds more (tool calls, reasoning), with its content only
 * when that is not the plain string `reply` already holds, so a long answer
 * is not kept twice. Undefined for a plain answer.
 */
export function richReply(reply: ChatMessage): StoredReplyMessage | undefined {
  if (!reply.tool_calls?.length && !reply.reasoning_content) return undefined;
  if (typeof reply.content !== "string") return reply;
  const { content: _text, ...rest } = reply;
  return rest;
}

/** The reply message again, from a record's `reply` and `reply_message`. */
export function replyMessage(
  reply: string | undefined,
  stored: StoredReplyMessage | undefined,
): ChatMessage {
  if (!stored) return { role: "assistant", content: reply ?? "" };
  return { ...stored, content: "content" in stored ? stored.content! : reply ?? "" };
}

/** The UTF-8 size of a value as JSON. */
export function jsonBytes(value: unknown): number {
  return new TextEncoder().encode(JSON.stringify(value)).length;
}
