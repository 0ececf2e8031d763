/**
 * The per-key counters in the Deno KV file (see lib/core/key_counters.ts):
 * `["limit_window", owner, start]`, `["limit_set", kind, owner]` and
 * `["usage", owner, day]`, each changed by a version-checked commit.
 */
import {
  addUsage,
  type CountResult,
  type DayUsage,
  emptyDay,
  type JobState,
  type JoinResult,
  type KeyCounters,
  type LimitWindow,
  type SlotKind,
  USAGE_KEEP_DAYS,
  type WindowCaps,
  type WindowCounts,
} from "../../core/key_counters.ts";
import type { Job } from "../../core/jobs.ts";
import { jobKey } from "./kv_job_list.ts";

const windowKey = (owner: string, window: LimitWindow) => ["limit_window", owner, window.start];
const setKey = (kind: SlotKind, owner: string) => ["limit_set", kind, owner];
const usageKey = (owner: string, day: string) => ["usage", owner, day];

/** Deno KV's most keys in one read. */
const GET_MANY_MAX = 10;
const DAY_MS = 86_400_000;

/** A window's counter lives a window past its end: long enough to be read, short enough to go. */
function windowExpiry(window: LimitWindow): { expireIn: number } {
  return { expireIn: Math.max(1000, (window.start + 2 * window.seconds) * 1000 - Date.now()) };
}

/** {@linkcode KeyCounters} on Deno KV. */
export class KvKeyCounters implements KeyCounters {
  #kv: Deno.Kv;

  constructor(kv: Deno.Kv) {
    this.#kv = kv;
  }

  async countRequest(
    owner: string,
    window: LimitWindow,
    tokens: number,
    caps: WindowCaps,
  ): Promise<CountResult> {
    while (true) {
      const entry = await this.#kv.get<WindowCounts>(windowKey(owner, window));
      const counts = entry.value ?? { requests: 0, tokens: 0 };
      const full = (caps.requests !== undefined && counts.requests >= caps.requests) ||
        (caps.tokens !== undefined && counts.tokens >= caps.tokens);
      if (full) return { counted: false, counts };
      const next = { requests: counts.requests + 1, tokens: counts.tokens + tokens };
      const commit = await this.#kv.atomic().check(entry)
        .set(entry.key, next, windowExpiry(window)).commit();
      if (commit.ok) return { counted: true, counts: next };
    }
  }

  async windowCounts(owner: string, window: LimitWindow): Promise<WindowCounts> {
    return (await this.#kv.get<WindowCounts>(windowKey(owner, window))).value ??
      { requests: 0, tokens: 0 };
  }

  async addToWindow(
    owner: string,
    window: LimitWindow,
    add: Partial<WindowCounts>,
  ): Promise<void> {
    while (true) {
      const entry = await this.#kv.get<WindowCounts>(windowKey(owner, window));
      const counts = entry.value ?? { requests: 0, tokens: 0 };
      const next = {
        requests: counts.requests + (add.requests ?? 0),
        tokens: counts.tokens + (add.tokens ?? 0),
      };
      const commit = await this.#kv.atomic().check(entry)
        .set(entry.key, next, windowExpiry(window)).commit();
      if (commit.ok) return;
    }
  }

  async addMember(
    kind: SlotKind,
    owner: string,
    member: string,
    limit: number,
  ): Promise<JoinResult> {
    while (true) {
      const entry = await this.#kv.get<string[]>(setKey(kind, owner));
      const members = entry.value ?? [];
      if (members.includes(member)) return { joined: true, members };
      if (members.length >= limit) return { joined: false, members };
      const commit = await this.#kv.atomic().check(entry)
        .set(entry.key, [...members, member]).commit();
      if (commit.ok) return { joined: true, members: [...members, member] };
    }
  }

  async removeMembers(kind: SlotKind, owner: string, gone: readonly string[]): Promise<void> {
    while (true) {
      const entry = await this.#kv.get<string[]>(setKey(kind, owner));
      const members = entry.value ?? [];
      const kept = members.filter((m) => !gone.includes(m));
      if (kept.length === members.length) return;
      const atomic = this.#kv.atomic().check(entry);
      if (kept.length === 0) atomic.delete(entry.key);
      else atomic.set(entry.key, kept);
      if ((await atomic.commit()).ok) return;
    }
  }

  async jobStates(jobIds: readonly string[]): Promise<Map<string, JobState>> {
    const states = new Map<string, JobState>();
    for (let i = 0; i < jobIds.length; i += GET_MANY_MAX) {
      const ids = jobIds.slice(i, i + GET_MANY_MAX);
      const entries = await this.#kv.getMany<Job[]>(ids.map(jobKey));
      for (const { value } of entries) {
        if (value) states.set(value.job_id, value);
      }
    }
    return states;
  }

  async recordUsage(owner: string, day: string, added: DayUsage): Promise<void> {
    const expireIn = Math.max(1000, Date.parse(day) + (USAGE_KEEP_DAYS + 1) * DAY_MS - Date.now());
    while (true) {
      const entry = await this.#kv.get<DayUsage>(usageKey(owner, day));
      const next = addUsage(entry.value ?? emptyDay(), added);
      if ((await this.#kv.atomic().check(entry).set(entry.key, next, { expireIn }).commit()).ok) {
        return;
      }
    }
  }

  async readUsage(
    owners: readonly string[],
    days: readonly string[],
  ): Promise<Map<string, Map<string, DayUsage>>> {
    const usage = new Map<string, Map<string, DayUsage>>();
    const [first, last] = [days[0], days.at(-1)];
    if (first === undefined || last === undefined) return usage;
    for (const owner of owners) {
      const byDay = new Map<string, DayUsage>();
      // Days sort as text: one range read per key.
      const selector = { start: usageKey(owner, first), end: [...usageKey(owner, last), ""] };
      for await (const entry of this.#kv.list<DayUsage>(selector)) {
        const day = String(entry.key[2]);
        if (days.includes(day)) byDay.set(day, entry.value);
      }
      if (byDay.size > 0) usage.set(owner, byDay);
    }
    return usage;
  }
}
