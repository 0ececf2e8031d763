/**
 * The API keys in configuration, with their names and limits. A key entry is
 * `name:key` or just `key` (its name is then made from its owner id, never
 * from the key); a digest entry is `name:<64 hex>` or the digest alone.
 * `GATEWAY_KEY_LIMITS` gives limits by name, e.g.
 * `alice:rpm=60;tpm=100000;in_flight=2;waiting=50,*:in_flight=1`, where `*`
 * stands for every API key without a value of its own (admin keys have no
 * limits unless named). Read by lib/core/config.ts only.
 */
import { createHash } from "node:crypto";
import type { EnvReader } from "./env_reader.ts";

/** The limits a key may have; an absent one does not apply. */
export interface KeyLimits {
  /** Requests that make a job, per window of `LIMIT_WINDOW_S` (a minute by default). */
  readonly rpm?: number;
  /** Tokens per window: estimated from each request, corrected with the backend's usage. */
  readonly tpm?: number;
  /** The key's jobs running at once, over every worker. */
  readonly in_flight?: number;
  /** The key's jobs queued and not started yet; a request past it gets a 429. */
  readonly waiting?: number;
}

/** The names of the limits, in the order messages list them. */
export const LIMIT_NAMES: readonly (keyof KeyLimits)[] = ["rpm", "tpm", "in_flight", "waiting"];

/** A configured key as the gateway knows it: never the key itself. */
export interface KeySpec {
  /** Shown in the console, the logs and the metrics. */
  readonly name: string;
  /** Its owner id (lib/core/owners.ts): the first 8 bytes of its SHA-256 digest, in hex. */
  readonly owner: string;
  /** Whether it is an admin key (`GATEWAY_ADMIN_KEYS`, `GATEWAY_ADMIN_KEY_SHA256`). */
  readonly admin: boolean;
  readonly limits: KeyLimits;
}

/** The keys as the rest of the configuration keeps them, names taken off, and the table of them. */
export interface ConfiguredKeys {
  apiKeys: string[];
  apiKeyDigests: string[];
  adminKeys: string[];
  adminKeyDigests: string[];
  keys: KeySpec[];
}

/** What a key's name may be: it appears in logs, metric labels and URLs. */
const KEY_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
const DIGEST = /^[0-9a-f]{64}$/;
/** The limits entry that applies to every API key without a value of its own. */
const EVERY_KEY = "*";

/** Reads the four key variables and `GATEWAY_KEY_LIMITS`, adding each problem found to `read`. */
export function readKeys(read: EnvReader): ConfiguredKeys {
  const out: ConfiguredKeys = {
    apiKeys: [],
    apiKeyDigests: [],
    adminKeys: [],
    adminKeyDigests: [],
    keys: [],
  };
  const sources = [
    { variable: "GATEWAY_API_KEYS", admin: false, digests: false, into: out.apiKeys },
    { variable: "GATEWAY_API_KEY_SHA256", admin: false, digests: true, into: out.apiKeyDigests },
    { variable: "GATEWAY_ADMIN_KEYS", admin: true, digests: false, into: out.adminKeys },
    {
      variable: "GATEWAY_ADMIN_KEY_SHA256",
      admin: true,
      digests: true,
      into: out.adminKeyDigests,
    },
  ];
  const byOwner = new Map<string, { name?: string; admin: boolean; variable: string }>();
  for (const source of sources) {
    for (const entry of read.list(source.variable)) {
      const { name, secret } = splitEntry(entry);
      const value = source.digests ? secret.toLowerCase() : secret;
      source.into.push(value);
      // A malformed digest is reported by config.ts with the other digest checks.
      if (source.digests && !DIGEST.test(value)) continue;
      const owner = ownerOf(source.digests ? value : sha256Hex(value));
      const known = byOwner.get(owner);
      if (known && name && known.name && known.name !== name) {
        read.problem(
          `${source.variable} names a key "${name}" that ${known.variable} already names "${known.name}"`,
        );
      }
      byOwner.set(owner, {
        name: known?.name ?? name,
        admin: source.admin || (known?.admin ?? false),
        variable: known?.variable ?? source.variable,
      });
    }
  }
  const keys = [...byOwner].map(([owner, key]) => ({
    owner,
    admin: key.admin,
    // Four bytes of the owner id: enough to tell keys apart, and nothing of the key.
    name: key.name ?? `key-${owner.slice(0, 8)}`,
  }));
  for (const name of new Set(keys.map((k) => k.name))) {
    if (keys.filter((k) => k.name === name).length > 1) {
      read.problem(`Key names must differ: "${name}" names more than one key`);
    }
  }
  const limits = readLimits(read, new Set(keys.map((k) => k.name)));
  out.keys = keys.map((key) => ({
    ...key,
    limits: { ...(key.admin ? {} : limits.get(EVERY_KEY)), ...limits.get(key.name) },
  }));
  return out;
}

/**
 * `name:secret`, when what comes before the first colon is a name; otherwise
 * the whole entry is the secret, as before keys had names.
 */
function splitEntry(entry: string): { name?: string; secret: string } {
  const colon = entry.indexOf(":");
  const name = entry.slice(0, colon).trim();
  if (colon > 0 && KEY_NAME.test(name) && entry.length > colon + 1) {
    return { name, secret: entry.slice(colon + 1).trim() };
  }
  return { secret: entry };
}

/** `GATEWAY_KEY_LIMITS`, by key name (or `*`); every entry must name a configured key. */
function readLimits(read: EnvReader, names: ReadonlySet<string>): Map<string, KeyLimits> {
  const variable = "GATEWAY_KEY_LIMITS";
  const limits = new Map<string, KeyLimits>();
  const entries = read.list(variable);
  if (entries.length > 0 && names.size === 0) {
    read.problem(
      `${variable} needs API keys to limit: set GATEWAY_API_KEYS or GATEWAY_API_KEY_SHA256`,
    );
    return limits;
  }
  for (const entry of entries) {
    const colon = entry.indexOf(":");
    const name = entry.slice(0, Math.max(0, colon)).trim();
    if (colon < 1) {
      read.problem(`${variable} entry "${entry}" must be a key name, a colon, then limits`);
      continue;
    }
    if (name !== EVERY_KEY && !names.has(name)) {
      read.problem(
        `${variable} names "${name}", which is no configured key's name (known: ${
          [...names].join(", ")
        })`,
      );
      continue;
    }
    if (limits.has(name)) {
      read.problem(`${variable} gives "${name}" limits twice`);
      continue;
    }
    const values: Record<string, number> = {};
    for (const part of entry.slice(colon + 1).split(";").map((p) => p.trim()).filter(Boolean)) {
      const [limit, raw, extra] = part.split("=").map((s) => s.trim());
      const value = Number(raw);
      if (!(LIMIT_NAMES as readonly string[]).includes(limit) || extra !== undefined) {
        read.problem(
          `${variable} entry "${name}" has "${part}": a limit is one of ${
            LIMIT_NAMES.join(", ")
          }, then = and a number`,
        );
      } else if (!Number.isInteger(value) || value < 1 || value > 1e12) {
        read.problem(
          `${variable} entry "${name}" has ${limit}=${raw}: it must be a whole number of at least 1`,
        );
      } else if (limit in values) {
        read.problem(`${variable} entry "${name}" gives ${limit} twice`);
      } else {
        values[limit] = value;
      }
    }
    limits.set(name, values);
  }
  return limits;
}

/** The owner id of a key's digest (hex), as lib/core/owners.ts makes it from the bytes. */
function ownerOf(digestHex: string): string {
  return digestHex.slice(0, 16);
}

/** Synchronous, unlike Web Crypto's: the configuration is read at once, and Node's is in Lambda too. */
function sha256Hex(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** A key by its owner id, for the front door and the logs. */
export function keyOf(keys: readonly KeySpec[], owner: string | undefined): KeySpec | undefined {
  if (owner === undefined) return undefined;
  let index = indexes.get(keys);
  if (!index) {
    index = new Map(keys.map((k) => [k.owner, k]));
    indexes.set(keys, index);
  }
  return index.get(owner);
}

const indexes = new WeakMap<readonly KeySpec[], Map<string, KeySpec>>();

/** Whether a key has any limit. */
export function isLimited(key: KeySpec | undefined): key is KeySpec {
  return key !== undefined && Object.keys(key.limits).length > 0;
}
