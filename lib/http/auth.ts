/** Bearer-key authentication for the front door. */
import type { MiddlewareHandler } from "hono";
import { ApiError } from "./errors.ts";
import type { GatewayEnv } from "./http_context.ts";
import { ownerFromDigest } from "../core/owners.ts";

/** Options for {@linkcode apiKeyAuth}. */
export interface ApiKeyAuthOptions {
  /** Accepted keys; when these and `digests` are empty, every request passes. */
  keys: readonly string[];
  /** SHA-256 digests (hex) of further accepted keys. */
  digests?: readonly string[];
  /** Paths that never need a key; a valid key there still names its owner. Default `["/healthz"]`. */
  openPaths?: readonly string[];
}

/**
 * Requires `Authorization: Bearer <key>` with one of the configured keys, and
 * records the key's owner id for the handlers.
 */
export function apiKeyAuth(options: ApiKeyAuthOptions): MiddlewareHandler<GatewayEnv> {
  const openPaths = new Set(options.openPaths ?? ["/healthz"]);
  const configured = (options.digests ?? []).map(fromHex);
  const digests = Promise.all(options.keys.map(digest)).then((d) => [...d, ...configured]);
  const required = options.keys.length > 0 || configured.length > 0;
  return async function requireApiKey(c, next) {
    if (!required || c.req.method === "OPTIONS") return await next();
    const header = c.req.header("authorization") ?? "";
    const match = /^Bearer\s+(.+)$/i.exec(header.trim());
    if (openPaths.has(c.req.path)) {
      const given = match ? await digest(match[1]) : undefined;
      if (given && (await digests).some((known) => sameBytes(known, given))) {
        c.set("owner", ownerFromDigest(given));
      }
      return await next();
    }
    if (!match) {
      throw new ApiError(401, "Missing API key: send it as `Authorization: Bearer <key>`", {
        code: "missing_api_key",
      });
    }
    const given = await digest(match[1]);
    if (!(await digests).some((known) => sameBytes(known, given))) {
      throw new ApiError(401, "Invalid API key", { code: "invalid_api_key" });
    }
    c.set("owner", ownerFromDigest(given));
    await next();
  };
}

/** Hashing first makes every comparison the same length, so timing tells nothing about the key. */
async function digest(key: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key)));
}

function fromHex(hex: string): Uint8Array {
  return Uint8Array.from(hex.match(/../g) ?? [], (pair) => parseInt(pair, 16));
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}
