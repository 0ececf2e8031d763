/**
 * What the front door keeps out of records: each base64 image a client sent
 * goes to the blob store and its part holds the reference instead, and a
 * long chat sent with a message goes there whole. A job record then stays
 * within a DynamoDB item (400 KB) and a Deno KV value (64 KiB), and a stored
 * conversation never holds megabytes of base64.
 */
import { type BlobStore, decodeDataUrl } from "../core/blobs.ts";
import { type ChatMessage, jsonBytes } from "../core/messages.ts";

const BASE64_DATA_URL = /^\s*data:[^,]*;base64,/i;

/** The most JSON bytes of a chat kept in a job record; a longer one goes to the blob store. */
export const CONTEXT_INLINE_BYTES = 16_384;

/** A job's messages once large payloads are set aside. */
export interface PayloadsAside {
  userMessage: ChatMessage;
  /** The chat before the message, when it is short enough to keep in the record. */
  context?: ChatMessage[];
  /** The chat before the message, in the blob store, when it is not. */
  contextRef?: string;
}

/** Sets a job's base64 images and long chat aside in the blob store. */
export async function setPayloadsAside(
  blobs: BlobStore,
  owner: string | undefined,
  userMessage: ChatMessage,
  context: readonly ChatMessage[] | undefined,
): Promise<PayloadsAside> {
  // One store for each distinct image: a chat re-sends its images every turn.
  const refs = new Map<string, Promise<string>>();
  const aside = (message: ChatMessage): Promise<ChatMessage> =>
    withImagesAside(message, (url) => {
      let ref = refs.get(url);
      if (!ref) {
        const blob = decodeDataUrl(url)!;
        ref = blobs.put(owner, blob.bytes, blob.contentType);
        refs.set(url, ref);
      }
      return ref;
    });
  const result: PayloadsAside = { userMessage: await aside(userMessage) };
  if (context === undefined) return result;
  const chat = await Promise.all(context.map(aside));
  if (jsonBytes(chat) <= CONTEXT_INLINE_BYTES) {
    result.context = chat;
  } else {
    const json = new TextEncoder().encode(JSON.stringify(chat));
    result.contextRef = await blobs.put(owner, json, "application/json");
  }
  return result;
}

async function withImagesAside(
  message: ChatMessage,
  store: (dataUrl: string) => Promise<string>,
): Promise<ChatMessage> {
  if (!Array.isArray(message.content)) return message;
  const parts = await Promise.all(message.content.map(async (part) => {
    if (part.type !== "image_url" || !BASE64_DATA_URL.test(part.image_url.url)) return part;
    return { ...part, image_url: { ...part.image_url, url: await store(part.image_url.url) } };
  }));
  return { ...message, content: parts };
}
