/** API-key authentication for the front door: `Authorization: Bearer`, or Anthropic's `x-api-key`. */
import type { Context, MiddlewareHandler } from "hono";
import { ApiError } from "./errors.ts";
import type { GatewayEnv } from "./http_context.ts";
import { keyOf, type KeySpec } from "../core/key_config.ts";
import { ownerFromDigest } from "../core/owners.ts";

/** Options for {@linkcode apiKeyAuth}. */
export interface ApiKeyAuthOptions {
  /** Accepted keys; when these and `digests` are empty, every request passes. */
  keys: readonly string[];
  /** SHA-256 digests (hex) of further accepted keys. */
  digests?: readonly string[];
  /** Paths that never need a key; a valid key there still names its owner. Default `["/healthz"]`. */
  openPaths?: readonly string[];
  /** The configured keys' names and limits (`Config.keys`), recorded with the owner. */
  known?: readonly KeySpec[];
}

/**
 * Requires one of the configured keys, as `Authorization: Bearer <key>` or
 * as `x-api-key: <key>` (how Anthropic's clients send theirs; the bearer
 * header wins when both come), and records the key's owner id for the
 * handlers.
 */
export function apiKeyAuth(options: ApiKeyAuthOptions): MiddlewareHandler<GatewayEnv> {
  const openPaths = new Set(options.openPaths ?? ["/healthz"]);
  const configured = (options.digests ?? []).map(fromHex);
  const digests = Promise.all(options.keys.map(digest)).then((d) => [...d, ...configured]);
  const required = options.keys.length > 0 || configured.length > 0;
  const identify = (c: Context<GatewayEnv>, given: Uint8Array) => {
    const owner = ownerFromDigest(given);
    c.set("owner", owner);
    c.set("key", keyOf(options.known ?? [], owner));
  };
  return async function requireApiKey(c, next) {
    if (!required || c.req.method === "OPTIONS") return await next();
    if (openPaths.has(c.req.path)) {
      const key = requestKeyOf((name) => c.req.header(name));
      const given = key === undefined ? undefined : await digest(key);
      if (given && (await digests).some((known) => sameBytes(known, given))) identify(c, given);
      return await next();
    }
    const given = await digest(requestKey((name) => c.req.header(name)));
    if (!(await digests).some((known) => sameBytes(known, given))) {
      throw new ApiError(401, "Invalid API key", { code: "invalid_api_key" });
    }
    identify(c, given);
    await next();
  };
}

/** Options for {@linkcode adminKeyAuth}. */
export interface AdminKeyAuthOptions {
  /** Keys that may use the admin routes; when these and `digests` are empty, nobody may. */
  keys: readonly string[];
  /** SHA-256 digests (hex) of further admin keys. */
  digests?: readonly string[];
}

/**
 * Requires one of the admin keys (`GATEWAY_ADMIN_KEYS`, or a key whose digest
 * is in `GATEWAY_ADMIN_KEY_SHA256`), for the routes that retry and redrive
 * dead letters; answers 403 to any other key.
 */
export function adminKeyAuth(options: AdminKeyAuthOptions): MiddlewareHandler<GatewayEnv> {
  const isAdmin = adminKeyCheck(options);
  const none = options.keys.length === 0 && (options.digests ?? []).length === 0;
  return async function requireAdminKey(c, next) {
    if (none) {
      throw new ApiError(
        403,
        "Forbidden: no admin keys are configured; set GATEWAY_ADMIN_KEYS or GATEWAY_ADMIN_KEY_SHA256 to retry or redrive dead letters",
        { code: "no_admin_keys", type: "permission_error" },
      );
    }
    if (!(await isAdmin(bearerKey(c.req.header("authorization"))))) {
      throw new ApiError(
        403,
        "Forbidden: this key may not retry or redrive dead letters; use an admin key (GATEWAY_ADMIN_KEYS)",
        { code: "not_admin", type: "permission_error" },
      );
    }
    await next();
  };
}

/**
 * Whether a key is one of the admin keys; a check that answers false to
 * every key when none are configured.
 */
export function adminKeyCheck(options: AdminKeyAuthOptions): (key: string) => Promise<boolean> {
  const configured = (options.digests ?? []).map(fromHex);
  const digests = Promise.all(options.keys.map(digest)).then((d) => [...d, ...configured]);
  return async function isAdminKey(key) {
    const given = await digest(key);
    return (await digests).some((known) => sameBytes(known, given));
  };
}

/** The key of an `Authorization: Bearer <key>` header, if it has one. */
export function bearerKeyOf(header: string | undefined): string | undefined {
  return /^Bearer\s+(.+)$/i.exec((header ?? "").trim())?.[1];
}

/** The key of an `Authorization: Bearer <key>` header, or a 401 when there is none. */
function bearerKey(header: string | undefined): string {
  const key = bearerKeyOf(header);
  if (key === undefined) {
    throw new ApiError(401, "Missing API key: send it as `Authorization: Bearer <key>`", {
      code: "missing_api_key",
    });
  }
  return key;
}

/** The header Anthropic's clients send their key in. */
const API_KEY_HEADER = "x-api-key";

/** A request's key: its bearer token, else its `x-api-key`. */
function requestKeyOf(header: (name: string) => string | undefined): string | undefined {
  return bearerKeyOf(header("authorization")) ?? (header(API_KEY_HEADER)?.trim() || undefined);
}

/** A request's key, or a 401 when it has none. */
function requestKey(header: (name: string) => string | undefined): string {
  const key = requestKeyOf(header);
  if (key === undefined) {
    throw new ApiError(
      401,
      "Missing API key: send it as `Authorization: Bearer <key>` or `x-api-key: <key>`",
      { code: "missing_api_key" },
    );
  }
  return key;
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
