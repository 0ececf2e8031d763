/**
 * The worker's one way to reach a URL a client gave (an image, a callback).
 * `fetch` resolves a name again after any check, so a name that answers a
 * public address to the check and 127.0.0.1 to the connection (DNS rebinding)
 * would reach the user's own network. Here the name is resolved once, every
 * address is checked, and the connection goes to a checked address, with the
 * name kept for the Host header and the TLS certificate check (SNI). Redirects
 * are followed here, each hop checked and pinned the same way.
 *
 * Deno's `fetch` has no resolver hook and no SNI override; `node:http` and
 * `node:https` connect to an IP literal with `servername` set, in Deno as in
 * Node.js. Every request gets its own socket (`agent: false`), so no pooled
 * connection to an earlier address is ever reused.
 */
import type { ClientRequest, IncomingMessage, OutgoingHttpHeaders } from "node:http";
import * as http from "node:http";
import * as https from "node:https";
import { Buffer } from "node:buffer";
import { describeUrl } from "../core/text.ts";
import {
  type AddressCheckOptions,
  OutboundRefusal,
  vetOutboundUrl,
  type VettedTarget,
} from "./address_check.ts";

/** A request to send to a vetted target. */
export interface PinnedRequest {
  method: "GET" | "POST";
  headers?: Record<string, string>;
  body?: string;
  /** Cuts the request off, body included; it then rejects with the signal's reason. */
  signal: AbortSignal;
}

/** Options for {@linkcode guardedFetch}. */
export interface GuardedFetchOptions extends AddressCheckOptions, Omit<PinnedRequest, "signal"> {
  /** Redirects followed, each checked again; 0 returns a redirect as it is. */
  maxRedirects: number;
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
/** Statuses whose response has no body, which `Response` refuses to carry one for. */
const NULL_BODY_STATUSES = new Set([204, 205, 304]);

/**
 * Requests a client's URL: resolved once, every address checked, connected to
 * a checked address, redirects followed up to `maxRedirects` with the same
 * checks. Throws {@linkcode OutboundRefusal} for a URL or a redirect that may
 * not be followed; a connection failure throws as it is.
 */
export async function guardedFetch(
  url: string | URL,
  options: GuardedFetchOptions,
): Promise<Response> {
  let target = await vetOutboundUrl(url, options);
  for (let redirects = 0;; redirects++) {
    const response = await requestPinned(target, options);
    if (!REDIRECT_STATUSES.has(response.status) || options.maxRedirects === 0) return response;
    await response.body?.cancel();
    if (redirects === options.maxRedirects) {
      throw new OutboundRefusal(`more than ${options.maxRedirects} redirects`);
    }
    const location = response.headers.get("location");
    if (location === null) {
      throw new OutboundRefusal(`server answered ${response.status} without a Location header`);
    }
    try {
      target = await vetOutboundUrl(new URL(location, target.url), options);
    } catch (err) {
      if (!(err instanceof OutboundRefusal) && !(err instanceof TypeError)) throw err;
      const reason = err instanceof OutboundRefusal ? err.message : "not a valid URL";
      throw new OutboundRefusal(`redirected to "${describeUrl(location)}": ${reason}`);
    }
  }
}

/**
 * Sends one request to a vetted target, connecting only to its checked
 * addresses (the next one when a connection cannot be made), with the URL's
 * host as Host header and TLS name. Redirects are returned, not followed.
 */
export async function requestPinned(
  target: VettedTarget,
  request: PinnedRequest,
): Promise<Response> {
  const addresses = target.addresses ?? [undefined];
  for (const [i, address] of addresses.entries()) {
    try {
      return await requestOnce(target.url, address, request);
    } catch (err) {
      const last = i === addresses.length - 1;
      if (last || request.signal.aborted || !(err instanceof NotConnected)) {
        throw err instanceof NotConnected ? err.cause : err;
      }
    }
  }
  throw new RangeError("Cannot send request: the target has no addresses");
}

/** A failure before the connection was made: another address may work. */
class NotConnected extends Error {
  constructor(cause: unknown) {
    super("not connected", { cause });
    this.name = "NotConnected";
  }
}

function requestOnce(
  url: URL,
  address: string | undefined,
  request: PinnedRequest,
): Promise<Response> {
  const { signal } = request;
  if (signal.aborted) return Promise.reject(signal.reason);
  const secure = url.protocol === "https:";
  const headers: OutgoingHttpHeaders = { ...request.headers, host: url.host };
  const body = request.body === undefined ? undefined : Buffer.from(request.body);
  if (body) headers["content-length"] = body.byteLength;
  const hostname = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
  const options: https.RequestOptions = {
    host: address ?? hostname,
    port: url.port || (secure ? 443 : 80),
    path: `${url.pathname}${url.search}`,
    method: request.method,
    headers,
    agent: false,
  };
  // The certificate is checked against the name the client gave, not the address.
  if (secure && address !== undefined && address !== hostname) options.servername = hostname;

  return new Promise<Response>((resolve, reject) => {
    let connected = false;
    let settled = false;
    const req: ClientRequest = (secure ? https : http).request(options, (res) => {
      settled = true;
      try {
        resolve(toResponse(res));
      } catch (err) {
        res.destroy();
        reject(err);
      }
    });
    const onAbort = () => req.destroy(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    req.once("close", () => signal.removeEventListener("abort", onAbort));
    req.once("socket", (socket) => {
      socket.once(secure ? "secureConnect" : "connect", () => connected = true);
    });
    req.once("error", (err) => {
      if (settled) return;
      settled = true;
      if (signal.aborted) reject(signal.reason);
      else reject(connected ? err : new NotConnected(err));
    });
    req.end(body);
  });
}

function toResponse(res: IncomingMessage): Response {
  const status = res.statusCode ?? 0;
  if (status < 200 || status > 599) {
    throw new Error(`Cannot read response: status ${status} is not an HTTP status`);
  }
  const headers = new Headers();
  for (const [name, value] of Object.entries(res.headers)) {
    if (value === undefined) continue;
    for (const one of Array.isArray(value) ? value : [value]) headers.append(name, one);
  }
  if (NULL_BODY_STATUSES.has(status)) {
    res.resume();
    return new Response(null, { status, statusText: res.statusMessage, headers });
  }
  return new Response(bodyStream(res), { status, statusText: res.statusMessage, headers });
}

/** The response body as a web stream that reads only as fast as it is consumed. */
function bodyStream(res: IncomingMessage): ReadableStream<Uint8Array> {
  let done = false;
  return new ReadableStream<Uint8Array>({
    start(controller) {
      res.on("data", (chunk: Buffer) => {
        if (done) return;
        controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        if ((controller.desiredSize ?? 0) <= 0) res.pause();
      });
      res.once("end", () => {
        if (!done) controller.close();
        done = true;
      });
      res.once("error", (err) => {
        if (!done) controller.error(err);
        done = true;
      });
      res.once("aborted", () => {
        if (!done) controller.error(new Error("Connection closed before the body was complete"));
        done = true;
      });
    },
    pull() {
      res.resume();
    },
    cancel() {
      done = true;
      res.destroy();
    },
  }, { highWaterMark: 4 });
}
