/**
 * Turns http(s) image URLs in chat messages into base64 data: URLs, for
 * backends such as Ollama that accept only inline images. Fetching a URL a
 * caller gave is a request made on their behalf from inside our network, so
 * only public addresses (or hosts allowed by configuration) are fetched, and
 * size, type, redirects and time are all limited.
 */
import { Buffer } from "node:buffer";
import type { ChatMessage, ContentPart } from "./messages.ts";

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

/**
 * Whether an image fetch must not reach this IP address: loopback, private,
 * link-local, unspecified, carrier-grade NAT, multicast, reserved, an IPv6 form
 * embedding one of those, or anything that does not parse as an address.
 */
export function isForbiddenAddress(ip: string): boolean {
  return forbiddenKind(ip) !== undefined;
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
    throw new Refusal(`cannot resolve host "${host}": ${(err as Error).message}`);
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
    throw new Refusal(`cannot fetch: ${(err as Error).message}`);
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

// IP addresses are compared as bytes against prefix tables.

interface AddressRange {
  bytes: Uint8Array;
  bits: number;
  kind: string;
}

function range(cidr: string, kind: string): AddressRange {
  const [address, bits] = cidr.split("/");
  const bytes = parseIpv4(address) ?? parseIpv6(address);
  if (!bytes) throw new TypeError(`Cannot build address range: "${cidr}" is not a CIDR`);
  return { bytes, bits: Number(bits), kind };
}

const IPV4_RANGES: readonly AddressRange[] = [
  range("0.0.0.0/8", "unspecified"),
  range("10.0.0.0/8", "private"),
  range("100.64.0.0/10", "carrier-grade NAT"),
  range("127.0.0.0/8", "loopback"),
  range("169.254.0.0/16", "link-local"),
  range("172.16.0.0/12", "private"),
  range("192.168.0.0/16", "private"),
  range("224.0.0.0/4", "multicast"),
  range("240.0.0.0/4", "reserved"),
];

const IPV6_RANGES: readonly AddressRange[] = [
  range("::/128", "unspecified"),
  range("::1/128", "loopback"),
  range("fc00::/7", "private"),
  range("fe80::/10", "link-local"),
  range("fec0::/10", "site-local"),
  range("ff00::/8", "multicast"),
];

/** IPv6 prefixes that carry an IPv4 address, judged by that address; `at` is its byte offset. */
const IPV6_EMBEDDING_IPV4: readonly (AddressRange & { at: number })[] = [
  { ...range("::ffff:0:0/96", "IPv4-mapped"), at: 12 },
  { ...range("::/96", "IPv4-compatible"), at: 12 },
  { ...range("64:ff9b::/96", "NAT64"), at: 12 },
  { ...range("2002::/16", "6to4"), at: 2 },
];

function forbiddenKind(ip: string): string | undefined {
  const text = ip.startsWith("[") && ip.endsWith("]") ? ip.slice(1, -1) : ip;
  const v4 = parseIpv4(text);
  if (v4) return IPV4_RANGES.find((r) => inRange(v4, r))?.kind;
  const v6 = parseIpv6(text);
  if (!v6) return "unparseable";
  const native = IPV6_RANGES.find((r) => inRange(v6, r));
  if (native) return native.kind;
  const embedding = IPV6_EMBEDDING_IPV4.find((r) => inRange(v6, r));
  if (!embedding) return undefined;
  const v4Kind = IPV4_RANGES.find((r) => inRange(v6.subarray(embedding.at, embedding.at + 4), r));
  return v4Kind && `${v4Kind.kind}, ${embedding.kind}`;
}

function inRange(bytes: Uint8Array, range: AddressRange): boolean {
  if (bytes.length !== range.bytes.length) return false;
  for (let i = 0, bits = range.bits; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((bytes[i] & mask) !== (range.bytes[i] & mask)) return false;
  }
  return true;
}

/** Strict dotted quad only: octal-looking parts such as "010" are not guessed at. */
function parseIpv4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p))) return undefined;
  const bytes = parts.map(Number);
  return bytes.every((b) => b <= 255) ? Uint8Array.from(bytes) : undefined;
}

function parseIpv6(text: string): Uint8Array | undefined {
  const zone = text.indexOf("%");
  if (zone === text.length - 1) return undefined;
  const halves = (zone === -1 ? text : text.slice(0, zone)).split("::");
  if (halves.length > 2) return undefined;
  const compressed = halves.length === 2;
  const head = parseGroups(halves[0], !compressed);
  const tail = compressed ? parseGroups(halves[1], true) : [];
  if (!head || !tail) return undefined;
  const missing = 8 - head.length - tail.length;
  if (compressed ? missing < 1 : missing !== 0) return undefined;
  const groups = [...head, ...new Array<number>(missing).fill(0), ...tail];
  return Uint8Array.from(groups.flatMap((g) => [g >> 8, g & 0xff]));
}

function parseGroups(text: string, ipv4Last: boolean): number[] | undefined {
  if (text === "") return [];
  const parts = text.split(":");
  const groups: number[] = [];
  for (const [i, part] of parts.entries()) {
    if (ipv4Last && i === parts.length - 1 && part.includes(".")) {
      const v4 = parseIpv4(part);
      if (!v4) return undefined;
      groups.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
    } else if (/^[0-9a-f]{1,4}$/i.test(part)) {
      groups.push(parseInt(part, 16));
    } else {
      return undefined;
    }
  }
  return groups;
}
