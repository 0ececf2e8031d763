/**
 * Reads settings from an environment record, collecting every problem so that
 * one error can name them all. Used only by lib/core/config.ts.
 */
import type { Env } from "./config.ts";

/** Typed reads of an environment record; each bad value adds a problem and yields the fallback. */
export class EnvReader {
  #env: Env;
  #problems: string[];

  constructor(env: Env, problems: string[]) {
    this.#env = env;
    this.#problems = problems;
  }

  #raw(name: string): string | undefined {
    const value = this.#env[name]?.trim();
    return value === "" ? undefined : value;
  }

  /** Records a problem found outside these typed reads. */
  problem(message: string): void {
    this.#problems.push(message);
  }

  string(name: string, fallback: string): string {
    return this.#raw(name) ?? fallback;
  }

  /** The trimmed value, or undefined when unset or empty. */
  optionalString(name: string): string | undefined {
    return this.#raw(name);
  }

  /** A comma-separated setting: its entries, trimmed, without empty ones. */
  list(name: string, options: { lowercase?: boolean } = {}): string[] {
    return (this.#raw(name) ?? "").split(",")
      .map((entry) => options.lowercase ? entry.trim().toLowerCase() : entry.trim())
      .filter((entry) => entry.length > 0);
  }

  integer(name: string, fallback: number, min: number, max: number): number {
    const raw = this.#raw(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min || value > max) {
      this.#problems.push(`${name} must be a whole number from ${min} to ${max}, got "${raw}"`);
      return fallback;
    }
    return value;
  }

  oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    const raw = this.#raw(name);
    if (raw === undefined) return fallback;
    if ((allowed as readonly string[]).includes(raw)) return raw as T;
    this.#problems.push(`${name} must be one of ${allowed.join(", ")}, got "${raw}"`);
    return fallback;
  }

  url(name: string, fallback: string): string {
    return this.optionalUrl(name) ?? fallback;
  }

  optionalUrl(name: string): string | undefined {
    const raw = this.#raw(name);
    if (raw === undefined) return undefined;
    try {
      const url = new URL(raw);
      if (url.protocol === "http:" || url.protocol === "https:") return raw.replace(/\/+$/, "");
    } catch {
      // reported below
    }
    this.#problems.push(`${name} must be an http(s) URL, got "${raw}"`);
    return undefined;
  }
}

/** Freezes a value and everything in it. */
export function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object") {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
