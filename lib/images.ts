/**
 * Turns http(s) image URLs in chat messages into base64 data: URLs, for
 * backends such as Ollama that accept only inline images. Fetching a URL a
 * caller gave is a request made on their behalf from inside our network, so
 * only public addresses (or hosts allowed by configuration) are fetched, and
 * size, type, redirects and time are all limited.
 */
import { errorMessage } from "./error_message.ts";
import { Buffer } from "node:buffer";
import type { ChatMessage, ContentPart } from "./messages.ts";
import { forbiddenKind, parseIpv4 } from "./ip_address.ts";

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
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const ACCEPTED = "PNG, JPEG or WebP";
const ACCEPTED_TYPES = new Set(["image/png", "image/jpeg", "image/webp"]);
const DATA_URL = /^\s*data:/i;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Splits a comma-separated allowed-hosts setting into trimmed, lowercase entries. */
export function parseAllowedHosts(value: string | undefined): string[] {
  return (value ?? "").split(",").map((entry) => entry.trim().toLowerCase()).filter((entry) =>
    entry.length > 0
  );
}

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

/** Checks that an http(s) URL may be fetched (scheme, allowed hosts, public addresses) without fetching it. */
export async function checkImageUrl(url: string, options: ImageFetchOptions): Promise<URL> {
  const signal = AbortSignal.timeout(options.timeoutMs);
  return await explainRefusals(url, options, signal, async () => {
    const target = parseUrl(url);
    await checkTarget(target, options, signal);
    return target;
  });
}

/** Thrown inside this module with a bare reason; the caller's URL is added on the way out. */
class Refusal extends Error {}

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
    const response = await fetchFollowingRedirects(parseUrl(url), options, signal);
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
    if (err instanceof Refusal) throw new ImageError(url, err.message);
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

function parseUrl(url: string): URL {
  try {
    return new URL(url);
  } catch {
    throw new Refusal("not a valid URL");
  }
}

async function checkTarget(
  target: URL,
  options: ImageFetchOptions,
  signal: AbortSignal,
): Promise<void> {
  if (target.protocol !== "http:" && target.protocol !== "https:") {
    throw new Refusal(
      `scheme "${shorten(target.protocol, 20)}" is not accepted; use http, https or data:`,
    );
  }
  if (target.username || target.password) {
    throw new Refusal("URLs with a user name or password are not accepted");
  }
  if (isAllowedHost(target, options.allowedHosts)) return;
  const host = target.hostname;
  const literal = host.startsWith("[") ? host.slice(1, -1) : parseIpv4(host) ? host : undefined;
  if (literal) {
    const kind = forbiddenKind(literal);
    if (kind) throw new Refusal(`${literal} is not a public address (${kind})`);
    return;
  }
  const resolve = options.resolve ?? ((name: string) => resolveWithDns(name, signal));
  let addresses: string[];
  try {
    addresses = await abortable(resolve(host), signal);
  } catch (err) {
    if (signal.aborted) throw err;
    throw new Refusal(`cannot resolve host "${host}": ${errorMessage(err)}`);
  }
  if (addresses.length === 0) throw new Refusal(`host "${host}" has no addresses`);
  for (const address of addresses) {
    const kind = forbiddenKind(address);
    if (kind) {
      throw new Refusal(
        `host "${host}" resolves to ${
          shorten(address, 60)
        }, which is not a public address (${kind})`,
      );
    }
  }
}

function isAllowedHost(target: URL, allowedHosts: readonly string[]): boolean {
  const host = withoutFinalDot(target.hostname);
  const port = target.port || (target.protocol === "https:" ? "443" : "80");
  return allowedHosts.some((entry) => {
    const match = /^(\[[^\]]*\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(entry.trim().toLowerCase());
    if (!match) return false;
    const entryPort = match[2] === undefined ? undefined : String(Number(match[2]));
    return canonicalHost(match[1]) === host && (entryPort === undefined || entryPort === port);
  });
}

function canonicalHost(host: string): string | undefined {
  try {
    return withoutFinalDot(new URL(`http://${host}/`).hostname);
  } catch {
    return undefined;
  }
}

function withoutFinalDot(host: string): string {
  return host.endsWith(".") ? host.slice(0, -1) : host;
}

/** The default resolver; a failed lookup other than "no such record" refuses, rather than trusting half an answer. */
async function resolveWithDns(hostname: string, signal: AbortSignal): Promise<string[]> {
  const results = await Promise.allSettled([
    Deno.resolveDns(hostname, "A", { signal }),
    Deno.resolveDns(hostname, "AAAA", { signal }),
  ]);
  const addresses: string[] = [];
  for (const result of results) {
    if (result.status === "fulfilled") addresses.push(...result.value);
    else if (!(result.reason instanceof Deno.errors.NotFound)) throw result.reason;
  }
  return addresses;
}

async function fetchFollowingRedirects(
  start: URL,
  options: ImageFetchOptions,
  signal: AbortSignal,
): Promise<Response> {
  let url = start;
  await checkTarget(url, options, signal);
  for (let redirects = 0;; redirects++) {
    const response = await fetchOnce(url, signal);
    if (!REDIRECT_STATUSES.has(response.status)) {
      if (response.ok) return response;
      await response.body?.cancel();
      throw new Refusal(`server answered ${statusLabel(response)}`);
    }
    await response.body?.cancel();
    if (redirects === MAX_REDIRECTS) throw new Refusal(`more than ${MAX_REDIRECTS} redirects`);
    const location = response.headers.get("location");
    if (location === null) {
      throw new Refusal(`server answered ${response.status} without a Location header`);
    }
    try {
      url = new URL(location, url);
      await checkTarget(url, options, signal);
    } catch (err) {
      if (!(err instanceof Refusal) && !(err instanceof TypeError)) throw err;
      const reason = err instanceof Refusal ? err.message : "not a valid URL";
      throw new Refusal(`redirected to "${describeUrl(location)}": ${reason}`);
    }
  }
}

async function fetchOnce(url: URL, signal: AbortSignal): Promise<Response> {
  try {
    return await fetch(url, {
      redirect: "manual",
      signal,
      headers: { accept: [...ACCEPTED_TYPES].join(", ") },
    });
  } catch (err) {
    if (signal.aborted) throw err;
    throw new Refusal(`cannot fetch: ${errorMessage(err)}`);
  }
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

/** Settles with the promise, or rejects as soon as the signal aborts, whichever comes first. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
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

/** A URL fit for a message: data: URLs show only their header, credentials are dropped, long URLs cut. */
function describeUrl(url: string): string {
  if (DATA_URL.test(url)) {
    const comma = url.indexOf(",");
    return `${url.slice(0, comma === -1 ? 0 : Math.min(comma + 1, 60)).trim() || "data:"}…`;
  }
  try {
    const parsed = new URL(url);
    if (parsed.username || parsed.password) {
      parsed.username = "";
      parsed.password = "";
      return shorten(parsed.href, 200);
    }
  } catch {
    // not a URL: shown as given
  }
  return shorten(url, 200);
}

function shorten(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
