/**
 * Turns http(s) image URLs in chat messages into base64 data: URLs, for
 * backends such as Ollama that accept only inline images. Fetching a URL a
 * caller gave is a request made on their behalf from inside our network, so
 * only public addresses (or hosts allowed by configuration) are fetched, and
 * size, type, redirects and time are all limited.
 */
import { Buffer } from "node:buffer";
import { errorMessage } from "../core/error_message.ts";
import type { ChatMessage, ContentPart } from "../core/messages.ts";
import { describeUrl, shorten } from "../core/text.ts";
import { abortable, OutboundRefusal } from "../outbound/address_check.ts";
import { guardedFetch } from "../outbound/guarded_client.ts";

/** Limits and permissions for {@linkcode inlineImages}. */
export interface ImageFetchOptions {
  /** Largest image accepted, in bytes (decoded, for data: URLs). */
  maxBytes: number;
  /** Time allowed for one image: resolving, every redirect and the whole body. */
  timeoutMs: number;
  /** `host` or `host:port` (IPv6 in brackets) fetched without the public-address check. */
  allowedHosts: readonly string[];
  /** Looks up a host's addresses; default DNS A and AAAA records. */
  resolve?: (hostname: string) => Promise<string[]>;
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
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Returns copies of the messages with every http(s) image fetched into a data: URL. */
export async function inlineImages(
  messages: readonly ChatMessage[],
  options: ImageFetchOptions,
): Promise<ChatMessage[]> {
  const inlined = new Map<string, string>();
  const result: ChatMessage[] = [];
  for (const message of messages) {
    if (!Array.isArray(message.content)) {
      result.push({ ...message });
      continue;
    }
    const content: ContentPart[] = [];
    for (const part of message.content) {
      if (part.type !== "image_url") {
        content.push({ ...part });
        continue;
      }
      const url = part.image_url.url;
      let dataUrl = inlined.get(url);
      if (dataUrl === undefined) {
        dataUrl = await inlineImage(url, options);
        inlined.set(url, dataUrl);
      }
      content.push({ ...part, image_url: { ...part.image_url, url: dataUrl } });
    }
    result.push({ ...message, content });
  }
  return result;
}

/** Thrown inside this module with a bare reason; the caller's URL is added on the way out. */
const Refusal = OutboundRefusal;

async function inlineImage(url: string, options: ImageFetchOptions): Promise<string> {
  if (DATA_URL.test(url)) {
    await explainRefusals(
      url,
      options,
      undefined,
      () => Promise.resolve(checkDataUrl(url, options)),
    );
    return url;
  }
  const signal = AbortSignal.timeout(options.timeoutMs);
  return await explainRefusals(url, options, signal, async () => {
    const response = await fetchImage(url, options, signal);
    const bytes = await readBody(response, options.maxBytes, signal);
    const type = sniffImageType(bytes);
    if (type === undefined) {
      const sentAs = response.headers.get("content-type");
      const label = sentAs ? ` (sent as "${shorten(sentAs, 80)}")` : "";
      throw new Refusal(`content${label} is not a ${ACCEPTED} image`);
    }
    const base64 = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
    return `data:${type};base64,${base64}`;
  });
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

function checkDataUrl(url: string, options: ImageFetchOptions): void {
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
  if (size > options.maxBytes) throw new Refusal(tooBig(size, options.maxBytes));
  if (sniffImageType(Buffer.from(data.slice(0, 16), "base64")) === undefined) {
    throw new Refusal(`data: URL content is not a ${ACCEPTED} image`);
  }
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
  maxBytes: number,
  signal: AbortSignal,
): Promise<Uint8Array> {
  const declared = Number(response.headers.get("content-length") ?? Number.NaN);
  if (declared > maxBytes) {
    await response.body?.cancel();
    throw new Refusal(tooBig(declared, maxBytes));
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
      if (size > maxBytes) throw new Refusal(`image is larger than the ${maxBytes}-byte limit`);
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

function tooBig(size: number, maxBytes: number): string {
  return `image is ${size} bytes, more than the ${maxBytes}-byte limit`;
}

function statusLabel(response: Response): string {
  return response.statusText ? `${response.status} ${response.statusText}` : `${response.status}`;
}
