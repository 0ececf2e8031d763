/**
 * The checks on an outbound URL that need no DNS: its scheme, no credentials,
 * and an IP literal or a loopback name judged as it is. Pure code, so the
 * front door (a Lambda on Node.js) can refuse an obviously bad URL at once;
 * the worker adds the DNS check (address_check.ts) before it connects.
 */
import { shorten } from "../core/text.ts";
import { forbiddenKind, parseIpv4 } from "./ip_address.ts";

/** Why a URL may not be requested; `message` is the bare reason, without the URL. */
export class OutboundRefusal extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = "OutboundRefusal";
  }
}

/** Options for {@linkcode checkUrlLiterally}. */
export interface LiteralCheckOptions {
  /** `host` or `host:port` (IPv6 in brackets) reached without the public-address check. */
  allowedHosts: readonly string[];
  /** Named in the refusal of another scheme, e.g. "use http or https". */
  schemeHint?: string;
}

/**
 * Parses an http(s) URL without credentials, and refuses an IP literal that
 * is not public, unless its host is allowed. A host name is left for the DNS
 * check. Throws {@linkcode OutboundRefusal}.
 */
export function checkUrlLiterally(url: string | URL, options: LiteralCheckOptions): URL {
  const target = parseHttpUrl(url, options.schemeHint);
  if (isAllowedHost(target, options.allowedHosts)) return target;
  const literal = literalAddress(target);
  if (literal) {
    const kind = forbiddenKind(literal);
    if (kind) throw new OutboundRefusal(`${literal} is not a public address (${kind})`);
  }
  return target;
}

/** Parses a URL and checks its scheme is http or https and it carries no credentials. */
export function parseHttpUrl(url: string | URL, schemeHint = "use http or https"): URL {
  let target: URL;
  try {
    target = url instanceof URL ? url : new URL(url);
  } catch {
    throw new OutboundRefusal("not a valid URL");
  }
  if (target.protocol !== "http:" && target.protocol !== "https:") {
    throw new OutboundRefusal(
      `scheme "${shorten(target.protocol, 20)}" is not accepted; ${schemeHint}`,
    );
  }
  if (target.username || target.password) {
    throw new OutboundRefusal("URLs with a user name or password are not accepted");
  }
  return target;
}

/** The URL's host as an IP address (IPv6 without brackets), or undefined for a name. */
export function literalAddress(target: URL): string | undefined {
  const host = target.hostname;
  if (host.startsWith("[")) return host.slice(1, -1);
  return parseIpv4(host) ? host : undefined;
}

/** Whether a host name means loopback whatever DNS says: `localhost` and its subdomains (RFC 6761). */
export function isLoopbackName(hostname: string): boolean {
  const host = withoutFinalDot(hostname);
  return host === "localhost" || host.endsWith(".localhost");
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
