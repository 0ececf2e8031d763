/**
 * Turns http(s) image URLs in chat messages into base64 data: URLs, for
 * backends such as Ollama that accept only inline images. Fetching a URL a
 * caller gave is a request made on their behalf from inside our network, so
 * only public addresses (or hosts allowed by configuration) are fetched, and
 * size, type, redirects and time are all limited.
 */
import { Buffer } from "node:buffer";
import { type BlobStore, dataUrlOf, isBlobRef } from "../core/blobs.ts";
import { errorMessage } from "../core/error_message.ts";
import type { ChatMessage, ContentPart } from "../core/messages.ts";
import { describeUrl, shorten } from "../core/text.ts";
import { abortable, OutboundRefusal } from "../outbound/address_check.ts";
import { guardedFetch } from "../outbound/guarded_client.ts";
import type { CachedImage, ImageCache } from "./image_cache.ts";

/** Limits and permissions for {@linkcode inlineImages}. */
export interface ImageFetchOptions {
  /** Largest image accepted, in bytes (decoded, for data: URLs). */
  maxBytes: number;
  /**
   * Time allowed for all of a job's images together: resolving, every
   * redirect and every body.
   */
  timeoutMs: number;
  /** Bytes allowed for all of a job's images together (decoded); default no budget beyond `maxBytes` each. */
  jobMaxBytes?: number;
  /** `host` or `host:port` (IPv6 in brackets) fetched without the public-address check. */
  allowedHosts: readonly string[];
  /** Looks up a host's addresses; default DNS A and AAAA records. */
  resolve?: (hostname: string) => Promise<string[]>;
  /** Images fetched for earlier jobs, so a conversation's images are fetched once, not every turn. */
  cache?: ImageCache;
  /** Whose job this is: a cached image is shared only within one owner's jobs. */
  owner?: string;
  /** Where images a client sent inline are kept (`gateway-blob:` references). */
  blobs?: BlobStore;
  /**
   * Fetches each owner's jobs may have in flight at once (`IMAGE_FETCHES_PER_KEY`):
   * a job waits here for its owner's turn, within its own time for images.
   */
  fetchSlots?: FetchSlots;
  /** Aborted when the worker stops: fetches under way give up. */
  signal?: AbortSignal;
}

/** Turns to fetch, per owner; see lib/worker/semaphore.ts `KeyedSemaphore`. */
export interface FetchSlots {
  acquire(owner: string, signal?: AbortSignal): Promise<() => void>;
}

/** Why an image could not be used; the message names the URL, shortened, never the image bytes. */
export class ImageError extends Error {
  /** The reason alone, without the URL. */
  readonly reason: string;

  constructor(url: string, reason: string) {
    super(`Cannot use image "${describeUrl(url)}": ${reason}`);
    this.name = "ImageError";
    this.reason = reason;
  }
}

const MAX_REDIRECTS = 3;
const ACCEPTED = "PNG, JPEG or WebP";
const ACCEPTED_TYPES = new Set(["image/png", "image/jpeg", "image/webp"]);
const DATA_URL = /^\s*data:/i;
const FETCHED_URL = /^\s*https?:/i;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** What is left of a job's time and bytes for images. */
interface Budget {
  bytesLeft: number;
  /** Aborts when the job's time for images is over. */
  signal: AbortSignal;
}

/**
 * Returns copies of the messages with every http(s) image fetched into a
 * data: URL. The newest message goes first and must be complete; an older
 * image that cannot be had within the job's time and bytes (or at all) is
 * replaced by a short text note, so a long conversation with images still
 * gets its answer.
 */
export async function inlineImages(
  messages: readonly ChatMessage[],
  options: ImageFetchOptions,
): Promise<ChatMessage[]> {
  const time = AbortSignal.timeout(options.timeoutMs);
  const budget: Budget = {
    bytesLeft: options.jobMaxBytes ?? Infinity,
    signal: options.signal ? AbortSignal.any([time, options.signal]) : time,
  };
  const inlined = new Map<string, string>();
  const result: ChatMessage[] = messages.map((message) => ({ ...message }));
  for (let i = messages.length - 1; i >= 0; i--) {
    const message = messages[i];
    if (!Array.isArray(message.content)) continue;
    const content: ContentPart[] = [];
    for (const part of message.content) {
      if (part.type !== "image_url") {
        content.push({ ...part });
        continue;
      }
      const url = part.image_url.url;
      try {
        let dataUrl = inlined.get(url);
        if (dataUrl === undefined) {
          dataUrl = await inlineImage(url, options, budget);
          inlined.set(url, dataUrl);
        }
        content.push({ ...part, image_url: { ...part.image_url, url: dataUrl } });
      } catch (err) {
        if (i === messages.length - 1 || !(err instanceof ImageError)) throw err;
        content.push({
          type: "text",
          text: `[image ${describeUrl(url)} not shown: ${err.reason}]`,
        });
      }
    }
    result[i] = { ...message, content };
  }
  return result;
}

/** Whether any of the messages holds an http(s) image, which only a fetch can inline. */
export function hasImagesToFetch(messages: readonly ChatMessage[]): boolean {
  return messages.some((m) =>
    Array.isArray(m.content) &&
    m.content.some((p) => p.type === "image_url" && FETCHED_URL.test(p.image_url.url))
  );
}

/** Thrown inside this module with a bare reason; the caller's URL is added on the way out. */
const Refusal = OutboundRefusal;

/** One image as a data: URL, from the cache or fetched, counted against the job's budget. */
async function inlineImage(
  url: string,
  options: ImageFetchOptions,
  budget: Budget,
): Promise<string> {
  const limit = Math.min(options.maxBytes, budget.bytesLeft);
  const tooBig = (size?: number) =>
    limit < options.maxBytes
      ? `the job's images would pass their ${options.jobMaxBytes}-byte budget`
      : size === undefined
      ? `image is larger than the ${options.maxBytes}-byte limit`
      : `image is ${size} bytes, more than the ${options.maxBytes}-byte limit`;
  let image: CachedImage;
  if (isBlobRef(url)) {
    const blob = await options.blobs?.get(url);
    if (!blob) throw new ImageError(url, "it is no longer kept (BLOB_TTL_DAYS)");
    const dataUrl = dataUrlOf(blob);
    const bytes = await explainRefusals(
      url,
      options,
      undefined,
      () => Promise.resolve(checkDataUrl(dataUrl, limit, tooBig)),
    );
    image = { dataUrl, bytes };
  } else if (DATA_URL.test(url)) {
    const bytes = await explainRefusals(
      url,
      options,
      undefined,
      () => Promise.resolve(checkDataUrl(url, limit, tooBig)),
    );
    image = { dataUrl: url, bytes };
  } else {
    const key = `${options.owner ?? ""} ${url}`;
    const cached = options.cache?.get(key);
    if (cached && cached.bytes > limit) throw new ImageError(url, tooBig(cached.bytes));
    image = cached ?? await explainRefusals(url, options, budget.signal, async () => {
      if (limit <= 0) throw new Refusal(tooBig());
      if (budget.signal.aborted) {
        throw new Refusal(
          `not fetched: the job's ${options.timeoutMs / 1000} s for images ran out`,
        );
      }
      const release = await fetchSlot(options, budget.signal);
      try {
        const fetched = await fetchAsDataUrl(url, options, limit, tooBig, budget.signal);
        options.cache?.set(key, fetched);
        return fetched;
      } finally {
        release();
      }
    });
  }
  budget.bytesLeft -= image.bytes;
  return image.dataUrl;
}

/** Waits for the owner's turn to fetch, within the job's time for images. */
async function fetchSlot(options: ImageFetchOptions, signal: AbortSignal): Promise<() => void> {
  if (!options.fetchSlots) return () => {};
  try {
    return await options.fetchSlots.acquire(options.owner ?? "", signal);
  } catch (err) {
    if (!signal.aborted) throw err;
    throw new Refusal(
      `not fetched: the job's ${
        options.timeoutMs / 1000
      } s for images ran out while the same API key's other images were being fetched`,
    );
  }
}

async function fetchAsDataUrl(
  url: string,
  options: ImageFetchOptions,
  limit: number,
  tooBig: (size?: number) => string,
  signal: AbortSignal,
): Promise<CachedImage> {
  const response = await fetchImage(url, options, signal);
  const bytes = await readBody(response, limit, tooBig, signal);
  const type = sniffImageType(bytes);
  if (type === undefined) {
    const sentAs = response.headers.get("content-type");
    const label = sentAs ? ` (sent as "${shorten(sentAs, 80)}")` : "";
    throw new Refusal(`content${label} is not a ${ACCEPTED} image`);
  }
  const base64 = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
  return { dataUrl: `data:${type};base64,${base64}`, bytes: bytes.byteLength };
}

async function explainRefusals<T>(
  url: string,
  options: ImageFetchOptions,
  signal: AbortSignal | undefined,
  work: () => Promise<T>,
): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof OutboundRefusal) throw new ImageError(url, err.message);
    if (signal?.aborted) {
      throw new ImageError(url, `no complete answer within ${options.timeoutMs / 1000} s`);
    }
    throw err;
  }
}

/** Checks a data: URL's type, encoding and size, and returns its size in bytes, decoded. */
function checkDataUrl(url: string, limit: number, tooBig: (size: number) => string): number {
  const comma = url.indexOf(",");
  if (comma === -1) throw new Refusal("data: URL has no comma before its data");
  const [type, ...parameters] = url.slice(url.indexOf(":") + 1, comma).split(";").map((s) =>
    s.trim().toLowerCase()
  );
  if (!ACCEPTED_TYPES.has(type)) {
    throw new Refusal(
      `data: URL type "${shorten(type, 50)}" is not one of ${[...ACCEPTED_TYPES].join(", ")}`,
    );
  }
  if (parameters.at(-1) !== "base64") throw new Refusal("data: URL is not base64-encoded");
  const data = url.slice(comma + 1);
  if (data.length % 4 !== 0 || !BASE64.test(data)) {
    throw new Refusal("data: URL holds invalid base64");
  }
  const padding = data.endsWith("==") ? 2 : data.endsWith("=") ? 1 : 0;
  const size = data.length / 4 * 3 - padding;
  if (size > limit) throw new Refusal(tooBig(size));
  if (sniffImageType(Buffer.from(data.slice(0, 16), "base64")) === undefined) {
    throw new Refusal(`data: URL content is not a ${ACCEPTED} image`);
  }
  return size;
}

async function fetchImage(
  url: string,
  options: ImageFetchOptions,
  signal: AbortSignal,
): Promise<Response> {
  let response: Response;
  try {
    response = await guardedFetch(url, {
      method: "GET",
      headers: { accept: [...ACCEPTED_TYPES].join(", ") },
      maxRedirects: MAX_REDIRECTS,
      allowedHosts: options.allowedHosts,
      resolve: options.resolve,
      signal,
      schemeHint: "use http, https or data:",
    });
  } catch (err) {
    if (err instanceof OutboundRefusal || signal.aborted) throw err;
    throw new Refusal(`cannot fetch: ${errorMessage(err)}`);
  }
  if (response.ok) return response;
  await response.body?.cancel();
  throw new Refusal(`server answered ${statusLabel(response)}`);
}

async function readBody(
  response: Response,
  limit: number,
  tooBig: (size?: number) => string,
  signal: AbortSignal,
): Promise<Uint8Array> {
  const declared = Number(response.headers.get("content-length") ?? Number.NaN);
  if (declared > limit) {
    await response.body?.cancel();
    throw new Refusal(tooBig(declared));
  }
  if (response.body === null) return new Uint8Array();
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await abortable(reader.read(), signal);
      if (done) break;
      size += value.byteLength;
      if (size > limit) throw new Refusal(tooBig());
      chunks.push(value);
    }
  } catch (err) {
    await reader.cancel().catch(() => {});
    throw err;
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}

function sniffImageType(bytes: Uint8Array): string | undefined {
  const startsWith = (magic: number[], at = 0) => magic.every((b, i) => bytes[at + i] === b);
  if (startsWith([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return "image/png";
  if (startsWith([0xff, 0xd8, 0xff])) return "image/jpeg";
  if (startsWith([0x52, 0x49, 0x46, 0x46]) && startsWith([0x57, 0x45, 0x42, 0x50], 8)) {
    return "image/webp";
  }
  return undefined;
}

function statusLabel(response: Response): string {
  return response.statusText ? `${response.status} ${response.statusText}` : `${response.status}`;
}
