/**
 * Which addresses the worker may reach on a client's behalf. An image URL or
 * a `callback_url` comes from a client, and the worker runs inside the user's
 * network, so only public addresses are reached, unless the operator allowed
 * a host by name (`IMAGE_ALLOWED_HOSTS`, `CALLBACK_ALLOWED_HOSTS`).
 */
import { errorMessage } from "../core/error_message.ts";
import { shorten } from "../core/text.ts";
import { forbiddenKind } from "./ip_address.ts";
import { checkUrlLiterally, isAllowedHost, literalAddress, OutboundRefusal } from "./url_rules.ts";

export { isAllowedHost, OutboundRefusal };

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
 * A URL that passed the checks, with the addresses it was judged by: a
 * connection must go to one of these, never to what a second lookup says.
 * `addresses` is absent for a host the operator allowed by name, which is
 * reached through the system's resolver.
 */
export interface VettedTarget {
  readonly url: URL;
  readonly addresses?: readonly string[];
}

/**
 * Checks that an http(s) URL may be requested: its scheme, no credentials,
 * and a public address for every address its host resolves to (or an allowed
 * host). Returns the parsed URL; throws {@linkcode OutboundRefusal}. Connect
 * with {@linkcode vetOutboundUrl}'s addresses: DNS may answer differently the
 * next time it is asked.
 */
export async function checkOutboundUrl(
  url: string | URL,
  options: AddressCheckOptions,
): Promise<URL> {
  return (await vetOutboundUrl(url, options)).url;
}

/**
 * Resolves a URL's host once and checks every address, as
 * {@linkcode checkOutboundUrl} does, and returns the addresses to connect to.
 */
export async function vetOutboundUrl(
  url: string | URL,
  options: AddressCheckOptions,
): Promise<VettedTarget> {
  const target = checkUrlLiterally(url, options);
  if (isAllowedHost(target, options.allowedHosts)) return { url: target };
  const literal = literalAddress(target);
  if (literal) return { url: target, addresses: [literal] };
  const host = target.hostname;
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
  return { url: target, addresses: Object.freeze([...addresses]) };
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
