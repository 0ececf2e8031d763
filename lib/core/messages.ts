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

/** One message of a conversation. */
export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string | ContentPart[];
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
    return { role: message.role, content: text };
  });
}

function describeImage(url: string): string {
  return url.startsWith("data:") ? "inline image" : url;
}

/** The text a job record keeps of an assistant's reply: its content, as JSON when in parts. */
export function replyText(reply: ChatMessage): string {
  return typeof reply.content === "string" ? reply.content : JSON.stringify(reply.content);
}

/** The UTF-8 size of a value as JSON. */
export function jsonBytes(value: unknown): number {
  return new TextEncoder().encode(JSON.stringify(value)).length;
}
