/**
 * Which addresses the worker may reach on a client's behalf. An image URL or
 * a `callback_url` comes from a client, and the worker runs inside the user's
 * network, so only public addresses are reached, unless the operator allowed
 * a host by name (`IMAGE_ALLOWED_HOSTS`, `CALLBACK_ALLOWED_HOSTS`).
 */
import { errorMessage } from "../core/error_message.ts";
import { shorten } from "../core/text.ts";
import { forbiddenKind, parseIpv4 } from "./ip_address.ts";

/** Why a URL may not be requested; `message` is the bare reason, without the URL. */
export class OutboundRefusal extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = "OutboundRefusal";
  }
}

/** What {@linkcode checkOutboundUrl} needs. */
export interface AddressCheckOptions {
  /** `host` or `host:port` (IPv6 in brackets) reached without the public-address check. */
  allowedHosts: readonly string[];
  /** Looks up a host's addresses; default DNS A and AAAA records. */
  resolve?: (hostname: string) => Promise<string[]>;
  /** Ends the check, e.g. a timeout; it then rejects with the signal's reason. */
  signal: AbortSignal;
  /** Named in the refusal of another scheme, e.g. "use http or https". */
  schemeHint?: string;
}

/**
 * Checks that an http(s) URL may be requested: its scheme, no credentials,
 * and a public address for every address its host resolves to (or an allowed
 * host). Returns the parsed URL; throws {@linkcode OutboundRefusal}.
 */
export async function checkOutboundUrl(
  url: string | URL,
  options: AddressCheckOptions,
): Promise<URL> {
  const target = parseUrl(url);
  if (target.protocol !== "http:" && target.protocol !== "https:") {
    throw new OutboundRefusal(
      `scheme "${shorten(target.protocol, 20)}" is not accepted; ${
        options.schemeHint ?? "use http or https"
      }`,
    );
  }
  if (target.username || target.password) {
    throw new OutboundRefusal("URLs with a user name or password are not accepted");
  }
  if (isAllowedHost(target, options.allowedHosts)) return target;
  const host = target.hostname;
  const literal = host.startsWith("[") ? host.slice(1, -1) : parseIpv4(host) ? host : undefined;
  if (literal) {
    const kind = forbiddenKind(literal);
    if (kind) throw new OutboundRefusal(`${literal} is not a public address (${kind})`);
    return target;
  }
  const { signal } = options;
  const resolve = options.resolve ?? ((name: string) => resolveWithDns(name, signal));
  let addresses: string[];
  try {
    addresses = await abortable(resolve(host), signal);
  } catch (err) {
    if (signal.aborted) throw err;
    throw new OutboundRefusal(`cannot resolve host "${host}": ${errorMessage(err)}`);
  }
  if (addresses.length === 0) throw new OutboundRefusal(`host "${host}" has no addresses`);
  for (const address of addresses) {
    const kind = forbiddenKind(address);
    if (kind) {
      throw new OutboundRefusal(
        `host "${host}" resolves to ${
          shorten(address, 60)
        }, which is not a public address (${kind})`,
      );
    }
  }
  return target;
}

function parseUrl(url: string | URL): URL {
  if (url instanceof URL) return url;
  try {
    return new URL(url);
  } catch {
    throw new OutboundRefusal("not a valid URL");
  }
}

/** Whether the operator allowed this URL's host (and port) by name. */
export function isAllowedHost(target: URL, allowedHosts: readonly string[]): boolean {
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

/** Settles with the promise, or rejects as soon as the signal aborts, whichever comes first. */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
