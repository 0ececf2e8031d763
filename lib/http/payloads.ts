/**
 * What the front door keeps out of records: each base64 image a client sent
 * goes to the blob store and its part holds the reference instead, and a
 * long chat sent with a message goes there whole, as do long request fields
 * (an agent's tools with their schemas). A job record then stays
 * within a DynamoDB item (400 KB) and a Deno KV value (64 KiB), and a stored
 * conversation never holds megabytes of base64.
 */
import {
  type BlobPutOptions,
  blobRef,
  type BlobStore,
  decodeDataUrl,
  type StoredBlob,
} from "../core/blobs.ts";
import type { CompletionParams } from "../core/jobs.ts";
import { type ChatMessage, jsonBytes } from "../core/messages.ts";

const BASE64_DATA_URL = /^\s*data:[^,]*;base64,/i;

/** The most JSON bytes of a chat kept in a job record; a longer one goes to the blob store. */
export const CONTEXT_INLINE_BYTES = 16_384;
/**
 * The most JSON bytes of a request's other fields (tools and their schemas,
 * `response_format`) kept in a job record. With the chat's 16 KB and a new
 * message of `MAX_MESSAGE_BYTES` (32 KB) a record stays within a Deno KV value.
 */
export const PARAMS_INLINE_BYTES = 8_192;

/** A job's messages once large payloads are set aside. */
export interface PayloadsAside {
  userMessage: ChatMessage;
  /** The chat before the message, when it is short enough to keep in the record. */
  context?: ChatMessage[];
  /** The chat before the message, in the blob store, when it is not. */
  contextRef?: string;
  /** The request's other fields, when they are short enough to keep in the record. */
  params?: CompletionParams;
  /** Those fields in the blob store, when they are not. */
  paramsRef?: string;
}

/** Sets a job's base64 images, long chat and long fields aside in the blob store. */
export async function setPayloadsAside(
  blobs: BlobStore,
  owner: string | undefined,
  userMessage: ChatMessage,
  context: readonly ChatMessage[] | undefined,
  params?: CompletionParams,
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
  if (params !== undefined && jsonBytes(params) > PARAMS_INLINE_BYTES) {
    const json = new TextEncoder().encode(JSON.stringify(params));
    result.paramsRef = await blobs.put(owner, json, "application/json");
  } else {
    result.params = params;
  }
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

/**
 * A blob store whose writes wait until {@linkcode BlobWritesHeld.write}: it
 * answers each `put` with the reference at once (references are named by
 * content), so the front door can measure a job with its payloads set aside
 * and refuse it before anything is written. Every blob is kept as `options`
 * say: a stateless request's for a day.
 */
export class BlobWritesHeld implements BlobStore {
  #blobs: BlobStore;
  #options: BlobPutOptions;
  #held = new Map<string, { owner: string | undefined; blob: StoredBlob }>();

  constructor(blobs: BlobStore, options: BlobPutOptions = {}) {
    this.#blobs = blobs;
    this.#options = options;
  }

  async put(owner: string | undefined, bytes: Uint8Array, contentType: string): Promise<string> {
    const ref = await blobRef(owner, bytes, contentType);
    this.#held.set(ref, { owner, blob: { bytes, contentType } });
    return ref;
  }

  get(ref: string): Promise<StoredBlob | undefined> {
    const held = this.#held.get(ref);
    return held ? Promise.resolve(held.blob) : this.#blobs.get(ref);
  }

  /**
   * Writes what was put, each blob once: each owner's all at once where the
   * store can, so a store that bounds an owner's bytes keeps all or none
   * (it throws `BlobQuotaError`).
   */
  async write(): Promise<void> {
    const byOwner = new Map<string | undefined, StoredBlob[]>();
    for (const { owner, blob } of this.#held.values()) {
      byOwner.set(owner, [...byOwner.get(owner) ?? [], blob]);
    }
    const blobs = this.#blobs;
    await Promise.all(
      [...byOwner].map(([owner, held]) =>
        blobs.putAll
          ? blobs.putAll(owner, held, this.#options)
          : Promise.all(held.map((b) => blobs.put(owner, b.bytes, b.contentType, this.#options)))
      ),
    );
    this.#held.clear();
  }
}
