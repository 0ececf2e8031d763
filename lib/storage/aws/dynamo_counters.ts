/**
 * The per-key counters on DynamoDB (see lib/core/key_counters.ts), as items
 * of the jobs table beside the jobs: a window's counter
 * (`window#<owner>#<start>`), a key's set of waiting or running jobs
 * (`slots#<kind>#<owner>`, a string set) and a key's day of usage
 * (`usage#<owner>#<day>`). Each change is one UpdateItem: `ADD` to a number
 * or a set, under a condition where a limit applies, so front doors and
 * workers anywhere count together. TTL removes windows and days of usage.
 */
import { type AttributeValue, ConditionalCheckFailedException } from "@aws-sdk/client-dynamodb";
import {
  BatchGetCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  UpdateCommand,
} from "@aws-sdk/lib-dynamodb";
import {
  type CountResult,
  type DayUsage,
  type JobState,
  type JoinResult,
  type KeyCounters,
  type LimitWindow,
  type SlotKind,
  USAGE_KEEP_DAYS,
  type WindowCaps,
  type WindowCounts,
} from "../../core/key_counters.ts";
import type { JobApi } from "../../core/jobs.ts";
import { sleep } from "../../core/sleep.ts";

const windowKey = (owner: string, window: LimitWindow) => ({
  job_id: `window#${owner}#${window.start}`,
});
const setKey = (kind: SlotKind, owner: string) => ({ job_id: `slots#${kind}#${owner}` });
const usageKey = (owner: string, day: string) => ({ job_id: `usage#${owner}#${day}` });

/** BatchGetItem's most keys in one call. */
const BATCH_GET_MAX = 100;
/** Rounds of unprocessed keys read again before giving up. */
const BATCH_ROUNDS = 5;
const DAY_S = 86_400;
/** Each API's job count is an attribute of its own in a day's item. */
const API_PREFIX = "api_";

/** {@linkcode KeyCounters} on the jobs table. */
export class DynamoKeyCounters implements KeyCounters {
  #db: DynamoDBDocumentClient;
  #table: string;

  constructor(db: DynamoDBDocumentClient, table: string) {
    this.#db = db;
    this.#table = table;
  }

  async countRequest(
    owner: string,
    window: LimitWindow,
    tokens: number,
    caps: WindowCaps,
  ): Promise<CountResult> {
    const conditions: string[] = [];
    const values: Record<string, unknown> = {
      ":one": 1,
      ":tokens": tokens,
      ":expires": window.start + 2 * window.seconds,
    };
    if (caps.requests !== undefined) {
      conditions.push("(attribute_not_exists(requests) OR requests < :requests)");
      values[":requests"] = caps.requests;
    }
    if (caps.tokens !== undefined) {
      conditions.push("(attribute_not_exists(tokens) OR tokens < :cap)");
      values[":cap"] = caps.tokens;
    }
    try {
      const out = await this.#db.send(
        new UpdateCommand({
          TableName: this.#table,
          Key: windowKey(owner, window),
          UpdateExpression: "ADD requests :one, tokens :tokens SET expires_at = :expires",
          ConditionExpression: conditions.length > 0 ? conditions.join(" AND ") : undefined,
          ExpressionAttributeValues: values,
          ReturnValues: "ALL_NEW",
          ReturnValuesOnConditionCheckFailure: "ALL_OLD",
        }),
      );
      return { counted: true, counts: countsOf(out.Attributes) };
    } catch (err) {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
      return { counted: false, counts: rawCounts(err.Item) };
    }
  }

  async windowCounts(owner: string, window: LimitWindow): Promise<WindowCounts> {
    // Eventually consistent, at half the price: it only informs the rate-limit headers.
    const out = await this.#db.send(
      new GetCommand({ TableName: this.#table, Key: windowKey(owner, window) }),
    );
    return countsOf(out.Item);
  }

  async addToWindow(
    owner: string,
    window: LimitWindow,
    add: Partial<WindowCounts>,
  ): Promise<void> {
    await this.#db.send(
      new UpdateCommand({
        TableName: this.#table,
        Key: windowKey(owner, window),
        UpdateExpression: "ADD requests :requests, tokens :tokens SET expires_at = :expires",
        ExpressionAttributeValues: {
          ":requests": add.requests ?? 0,
          ":tokens": add.tokens ?? 0,
          ":expires": window.start + 2 * window.seconds,
        },
      }),
    );
  }

  async addMember(
    kind: SlotKind,
    owner: string,
    member: string,
    limit: number,
  ): Promise<JoinResult> {
    try {
      const out = await this.#db.send(
        new UpdateCommand({
          TableName: this.#table,
          Key: setKey(kind, owner),
          UpdateExpression: "ADD members :member",
          ConditionExpression:
            "attribute_not_exists(members) OR size(members) < :limit OR contains(members, :id)",
          ExpressionAttributeValues: {
            ":member": new Set([member]),
            ":limit": limit,
            ":id": member,
          },
          ReturnValues: "ALL_NEW",
          ReturnValuesOnConditionCheckFailure: "ALL_OLD",
        }),
      );
      return { joined: true, members: [...(out.Attributes?.members as Set<string>)] };
    } catch (err) {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
      return { joined: false, members: err.Item?.members?.SS ?? [] };
    }
  }

  async removeMembers(kind: SlotKind, owner: string, members: readonly string[]): Promise<void> {
    if (members.length === 0) return;
    await this.#db.send(
      new UpdateCommand({
        TableName: this.#table,
        Key: setKey(kind, owner),
        UpdateExpression: "DELETE members :gone",
        ExpressionAttributeValues: { ":gone": new Set(members) },
      }),
    );
  }

  async jobStates(jobIds: readonly string[]): Promise<Map<string, JobState>> {
    const items = await this.#batchGet(
      [...new Set(jobIds)].map((id) => ({ job_id: id })),
      {
        ProjectionExpression: "job_id, #status, attempts, lease_until",
        ExpressionAttributeNames: { "#status": "status" },
        ConsistentRead: true,
      },
    );
    return new Map(
      items.filter((item) => "status" in item).map((item) => [
        String(item.job_id),
        item as unknown as JobState,
      ]),
    );
  }

  async recordUsage(owner: string, day: string, added: DayUsage): Promise<void> {
    const names: Record<string, string> = {};
    const values: Record<string, unknown> = {
      ":jobs": added.jobs,
      ":failures": added.failures,
      ":prompt": added.prompt_tokens,
      ":completion": added.completion_tokens,
      ":expires": Date.parse(day) / 1000 + (USAGE_KEEP_DAYS + 1) * DAY_S,
    };
    const apiAdds = Object.entries(added.apis).map(([api, jobs], i) => {
      names[`#api${i}`] = `${API_PREFIX}${api}`;
      values[`:api${i}`] = jobs;
      return `, #api${i} :api${i}`;
    });
    await this.#db.send(
      new UpdateCommand({
        TableName: this.#table,
        Key: usageKey(owner, day),
        UpdateExpression:
          `ADD jobs :jobs, failures :failures, prompt_tokens :prompt, completion_tokens :completion${
            apiAdds.join("")
          } SET expires_at = :expires`,
        ExpressionAttributeNames: apiAdds.length > 0 ? names : undefined,
        ExpressionAttributeValues: values,
      }),
    );
  }

  async readUsage(
    owners: readonly string[],
    days: readonly string[],
  ): Promise<Map<string, Map<string, DayUsage>>> {
    const keys = owners.flatMap((owner) => days.map((day) => usageKey(owner, day)));
    const usage = new Map<string, Map<string, DayUsage>>();
    for (const item of await this.#batchGet(keys, {})) {
      const [, owner, day] = String(item.job_id).split("#");
      const byDay = usage.get(owner) ?? new Map<string, DayUsage>();
      byDay.set(day, dayUsageOf(item));
      usage.set(owner, byDay);
    }
    return usage;
  }

  /** Reads items in batches, reading again what DynamoDB left unprocessed, a few times. */
  async #batchGet(
    keys: Record<string, unknown>[],
    options: {
      ProjectionExpression?: string;
      ExpressionAttributeNames?: Record<string, string>;
      ConsistentRead?: boolean;
    },
  ): Promise<Record<string, unknown>[]> {
    const items: Record<string, unknown>[] = [];
    for (let i = 0; i < keys.length; i += BATCH_GET_MAX) {
      let pending = keys.slice(i, i + BATCH_GET_MAX);
      for (let round = 0; pending.length > 0; round++) {
        if (round >= BATCH_ROUNDS) {
          throw new Error(`Cannot read ${pending.length} counter items: DynamoDB left them unread`);
        }
        if (round > 0) await sleep(50 * 2 ** round);
        const out = await this.#db.send(
          new BatchGetCommand({
            RequestItems: { [this.#table]: { Keys: pending, ...options } },
          }),
        );
        items.push(...(out.Responses?.[this.#table] ?? []));
        pending = out.UnprocessedKeys?.[this.#table]?.Keys ?? [];
      }
    }
    return items;
  }
}

function countsOf(item: Record<string, unknown> | undefined): WindowCounts {
  return { requests: Number(item?.requests ?? 0), tokens: Number(item?.tokens ?? 0) };
}

/** A window's counts from an item as DynamoDB's own format gives it (a failed condition's old item). */
function rawCounts(item: Record<string, AttributeValue> | undefined): WindowCounts {
  return { requests: Number(item?.requests?.N ?? 0), tokens: Number(item?.tokens?.N ?? 0) };
}

function dayUsageOf(item: Record<string, unknown>): DayUsage {
  const apis: Partial<Record<JobApi, number>> = {};
  for (const [name, value] of Object.entries(item)) {
    if (name.startsWith(API_PREFIX)) apis[name.slice(API_PREFIX.length) as JobApi] = Number(value);
  }
  return {
    jobs: Number(item.jobs ?? 0),
    failures: Number(item.failures ?? 0),
    prompt_tokens: Number(item.prompt_tokens ?? 0),
    completion_tokens: Number(item.completion_tokens ?? 0),
    apis,
  };
}
