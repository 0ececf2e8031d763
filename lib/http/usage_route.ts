/**
 * `GET /v1/usage?start=YYYY-MM-DD&end=YYYY-MM-DD&key=<name>`: each key's
 * jobs, failures and tokens per day (UTC), as the workers counted them when
 * the jobs ended (lib/worker/key_usage.ts). A key sees its own; an admin key
 * sees every configured key, by name, or the one `key` names. Days are kept
 * 90 days; the range is at most that long, and defaults to the last 30 days.
 */
import type { Handler } from "hono";
import type { KeySpec } from "../core/key_config.ts";
import { dayOf, type DayUsage, emptyDay, USAGE_KEEP_DAYS } from "../core/key_counters.ts";
import { ApiError, type FieldProblem, invalidRequest } from "./errors.ts";
import type { GatewayEnv } from "./http_context.ts";
import type { RouteDeps } from "./route_deps.ts";

const DAY_MS = 86_400_000;
const DEFAULT_DAYS = 30;
/** The name usage made without API keys goes by. */
export const NO_KEY_NAME = "anonymous";

/** One day of a key's usage, as the answer lists it. */
export type UsageDay = DayUsage & { date: string };

/** One key's usage in the answer. */
export interface KeyUsage {
  name: string;
  total: DayUsage;
  days: UsageDay[];
}

/** `GET /v1/usage`. */
export function getUsage({ services }: RouteDeps): Handler<GatewayEnv> {
  const { config, counters } = services;
  return async function handleGetUsage(c) {
    const problems: FieldProblem[] = [];
    const today = dayOf(Date.now());
    const end = parseDay(c.req.query("end"), "end", today, problems);
    const start = parseDay(
      c.req.query("start"),
      "start",
      dayOf(Date.parse(end) - (DEFAULT_DAYS - 1) * DAY_MS),
      problems,
    );
    const span = (Date.parse(end) - Date.parse(start)) / DAY_MS + 1;
    if (problems.length === 0 && span < 1) {
      problems.push({ param: "start", message: `must be no later than end (${end})` });
    } else if (problems.length === 0 && span > USAGE_KEEP_DAYS) {
      problems.push({
        param: "start",
        message:
          `must be at most ${USAGE_KEEP_DAYS} days before end: usage is kept ${USAGE_KEEP_DAYS} days`,
      });
    }
    const named = c.req.query("key");
    const keys = keysShown(config.keys, c.get("key"), c.get("owner"), named, problems);
    if (problems.length > 0) throw invalidRequest(problems);
    const days = Array.from({ length: span }, (_, i) => dayOf(Date.parse(start) + i * DAY_MS));
    const usage = await counters.readUsage(keys.map((k) => k.owner), days);
    return c.json({
      object: "usage",
      start,
      end,
      keys: keys.map(({ name, owner }): KeyUsage => {
        const byDay = usage.get(owner);
        const list = days.map((date) => ({ date, ...(byDay?.get(date) ?? emptyDay()) }));
        return { name, total: sum(list), days: list };
      }),
    });
  };
}

/**
 * The keys whose usage a caller sees: every configured key for an admin key
 * (or the one `named`), its own for any other, everything made without keys
 * on a gateway without them.
 */
function keysShown(
  configured: readonly KeySpec[],
  caller: KeySpec | undefined,
  owner: string | undefined,
  named: string | undefined,
  problems: FieldProblem[],
): { name: string; owner: string }[] {
  if (configured.length === 0 || owner === undefined) {
    return [{ name: NO_KEY_NAME, owner: owner ?? "" }];
  }
  const self = { name: caller?.name ?? NO_KEY_NAME, owner };
  if (named === undefined || named === "") return caller?.admin ? [...configured] : [self];
  if (!caller?.admin && named !== self.name) {
    throw new ApiError(
      403,
      `Forbidden: a key sees its own usage only; leave out key, or use an admin key (GATEWAY_ADMIN_KEYS) to see "${named}"`,
      { code: "not_admin", type: "permission_error", param: "key" },
    );
  }
  const key = configured.find((k) => k.name === named);
  if (!key) {
    problems.push({ param: "key", message: `names no configured key: "${named}"` });
    return [];
  }
  return [key];
}

/** A `YYYY-MM-DD` query parameter, or the fallback; a bad one adds a problem. */
function parseDay(
  value: string | undefined,
  param: string,
  fallback: string,
  problems: FieldProblem[],
): string {
  if (value === undefined || value === "") return fallback;
  const ms = Date.parse(`${value}T00:00:00Z`);
  if (!/^\d{4}-\d{2}-\d{2}$/.test(value) || !Number.isFinite(ms) || dayOf(ms) !== value) {
    problems.push({ param, message: "must be a day as YYYY-MM-DD (UTC), e.g. 2025-01-31" });
    return fallback;
  }
  return value;
}

function sum(days: readonly DayUsage[]): DayUsage {
  const total = emptyDay();
  for (const day of days) {
    total.jobs += day.jobs;
    total.failures += day.failures;
    total.prompt_tokens += day.prompt_tokens;
    total.completion_tokens += day.completion_tokens;
    for (const [api, count] of Object.entries(day.apis) as [keyof DayUsage["apis"], number][]) {
      total.apis[api] = (total.apis[api] ?? 0) + count;
    }
  }
  return total;
}
