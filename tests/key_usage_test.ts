/**
 * Usage per key, on both stores: what the workers count when jobs end
 * matches the `usage` the backend reported, `GET /v1/usage` shows a key its
 * own and an admin key every key by name, with its parameters checked;
 * `/metrics` counts per key name; a key's tokens per window are corrected
 * from the estimate to what the backend reported.
 */
import assert from "node:assert/strict";
import { sha256Hex } from "../lib/core/digest.ts";
import {
  dayOf,
  type DayUsage,
  type KeyCounters,
  usageOfJob,
  windowAt,
} from "../lib/core/key_counters.ts";
import { createLogger } from "../lib/core/log.ts";
import { KvKeyCounters } from "../lib/storage/embedded/kv_counters.ts";
import { UsageTally } from "../lib/worker/key_usage.ts";
import type { Job } from "../lib/core/jobs.ts";
import { backendTest, type TestGateway } from "./support/gateway.ts";
import { eventually } from "./support/wait.ts";

const ALICE = "sk-alice-usage";
const BOB = "sk-bob-usage";
const ROOT = "sk-root-usage";
const ENV = {
  GATEWAY_API_KEYS: `alice:${ALICE},bob:${BOB}`,
  GATEWAY_ADMIN_KEYS: `root:${ROOT}`,
  GATEWAY_KEY_LIMITS: "bob:tpm=1000000",
  LIMIT_WINDOW_S: "3600",
};

function call(gateway: TestGateway, path: string, key: string, body?: unknown) {
  return Promise.resolve(gateway.app.request(path, {
    method: body === undefined ? "GET" : "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  }));
}

async function chat(gateway: TestGateway, key: string, text: string): Promise<Job> {
  const res = await call(gateway, "/chat", key, {
    conversation_id: crypto.randomUUID(),
    user_message: text,
    model: "test-text-model",
  });
  assert.equal(res.status, 202, await res.clone().text());
  return await gateway.waitForJob((await res.json()).job_id);
}

backendTest(
  "usage per key matches what the backend reported, and /v1/usage shows it by name",
  async (t, start) => {
    const gateway = await start({
      env: ENV,
      vllmAnswer: (request) =>
        String(request.messages.at(-1)?.content).includes("fail")
          ? { status: 400, message: "the model refuses" }
          : { reply: "a reply of five words" },
    });
    const worker = await gateway.startWorker();
    const alice = [
      await chat(gateway, ALICE, "hello there"),
      await chat(gateway, ALICE, "and again"),
    ];
    const bob = [
      await chat(gateway, BOB, "one more question"),
      await chat(gateway, BOB, "please fail"),
    ];
    assert.deepEqual([...alice, ...bob].map((j) => j.status), [
      "succeeded",
      "succeeded",
      "succeeded",
      "failed",
    ]);
    const reported = (jobs: Job[]) => ({
      prompt: jobs.reduce((sum, j) => sum + (j.usage?.prompt_tokens ?? 0), 0),
      completion: jobs.reduce((sum, j) => sum + (j.usage?.completion_tokens ?? 0), 0),
    });
    const today = dayOf(Date.now());

    await t.step(
      "a key sees its own day: its jobs and the tokens its backend reported",
      async () => {
        let body: Record<string, unknown> & {
          keys: { name: string; total: Record<string, number> }[];
        };
        await eventually(
          async () => {
            body = await (await call(gateway, "/v1/usage", ALICE)).json();
            return body.keys[0]?.total.jobs === 2;
          },
          "alice's two jobs counted",
          30_000,
        );
        assert.equal(body!.end, today);
        assert.deepEqual(body!.keys.map((k) => k.name), ["alice"]);
        const total = body!.keys[0].total;
        const { prompt, completion } = reported(alice);
        assert.ok(prompt > 0 && completion > 0);
        assert.deepEqual(total, {
          jobs: 2,
          failures: 0,
          prompt_tokens: prompt,
          completion_tokens: completion,
          apis: { chat: 2 },
        });
      },
    );

    await t.step("an admin key sees every key by name, a failure counted as one", async () => {
      await eventually(
        async () => {
          const body = await (await call(gateway, `/v1/usage?start=${today}&end=${today}`, ROOT))
            .json();
          const byName = Object.fromEntries(
            body.keys.map((k: { name: string; days: unknown[]; total: unknown }) => [k.name, k]),
          );
          const bobTotal = byName.bob?.total;
          if (bobTotal?.jobs !== 2) return false;
          assert.deepEqual(Object.keys(byName), ["alice", "bob", "root"]);
          assert.equal(byName.bob.days.length, 1);
          assert.equal(bobTotal.failures, 1);
          assert.equal(bobTotal.prompt_tokens, reported(bob).prompt);
          assert.equal(byName.root.total.jobs, 0);
          return true;
        },
        "bob's two jobs counted",
        30_000,
      );
    });

    await t.step(
      "bad parameters are named in one 400; another key's usage is forbidden",
      async () => {
        const bad = await call(gateway, "/v1/usage?start=2025-02-30&end=yesterday", ROOT);
        assert.equal(bad.status, 400);
        const { error } = await bad.json();
        assert.deepEqual(error.details.map((d: { param: string }) => d.param).sort(), [
          "end",
          "start",
        ]);
        const backwards = await call(gateway, "/v1/usage?start=2025-03-02&end=2025-03-01", ROOT);
        assert.match((await backwards.json()).error.message, /start: must be no later than end/);
        const long = await call(gateway, "/v1/usage?start=2025-01-01&end=2025-06-01", ROOT);
        assert.match((await long.json()).error.message, /at most 90 days/);
        const unknown = await call(gateway, "/v1/usage?key=nobody", ROOT);
        assert.equal(unknown.status, 400);
        const other = await call(gateway, "/v1/usage?key=bob", ALICE);
        assert.equal(other.status, 403);
        assert.equal((await other.json()).error.param, "key");
      },
    );

    await t.step("a key's tokens per window end up as the backend reported them", async () => {
      const owner = (await sha256Hex(BOB)).slice(0, 16);
      const window = windowAt(Date.now(), 3600);
      const used = bob[0].usage!.prompt_tokens + bob[0].usage!.completion_tokens;
      // The failed job gave its estimate back; the other's estimate became its usage.
      await eventually(
        async () => (await gateway.services.counters.windowCounts(owner, window)).tokens === used,
        `bob's window to hold ${used} tokens`,
        30_000,
      );
    });

    await t.step("/metrics counts each key's jobs and tokens by name", async () => {
      await worker.stop(); // its last record carries its last counts
      const text = await (await call(gateway, "/metrics", ROOT)).text();
      const sample = (name: string, labels: string) =>
        Number(new RegExp(`^${name}\\{worker="[^"]+",${labels}\\} (\\d+)$`, "m").exec(text)?.[1]);
      assert.equal(sample("gateway_key_jobs_ended_total", 'key="alice",outcome="succeeded"'), 2);
      assert.equal(sample("gateway_key_jobs_ended_total", 'key="bob",outcome="failed"'), 1);
      assert.equal(
        sample("gateway_key_tokens_total", 'key="alice",kind="completion"'),
        reported(alice).completion,
      );
      assert.match(text, /^gateway_key_limit\{key="bob",limit="tpm"\} 1000000$/m);
      assert.ok(!text.includes(ALICE) && !text.includes(BOB), "no key in the metrics");
    });
  },
);

Deno.test("a worker's usage tally writes each key's day once per interval, keeps what failed for the next write, and gives a sum up after three", async () => {
  using kv = await Deno.openKv(":memory:");
  const counters = new KvKeyCounters(kv);
  let writes = 0;
  let failNext = false;
  const broken = new Set<string>();
  const byOwner = new Map<string, number>();
  const writesOf = (owner: string) => byOwner.get(owner) ?? 0;
  const counting: KeyCounters = Object.assign(Object.create(counters), {
    recordUsage(owner: string, day: string, added: DayUsage) {
      writes++;
      byOwner.set(owner, writesOf(owner) + 1);
      if (broken.has(owner)) return Promise.reject(new Error("access denied"));
      if (failNext) {
        failNext = false;
        return Promise.reject(new Error("throttled"));
      }
      return counters.recordUsage(owner, day, added);
    },
  });
  const lines: string[] = [];
  const tally = new UsageTally(counting, createLogger({ write: (line) => lines.push(line) }), 20);
  const today = dayOf(Date.now());
  const job = (api: "chat" | "messages", failed = false) =>
    usageOfJob({ failed, prompt_tokens: 2, completion_tokens: 3, api });
  for (let i = 0; i < 5; i++) tally.add("alice", today, job("chat"));
  tally.add("alice", today, job("messages", true));
  tally.add("bob", today, job("chat"));
  await eventually(() => writes === 2, "one write for each key's day", 5_000);
  await eventually(
    async () => (await counters.readUsage(["bob"], [today])).size === 1,
    "bob's day written",
    5_000,
  );

  failNext = true;
  tally.add("bob", today, job("chat"));
  await eventually(() => writes === 4, "the failed write made again", 5_000);
  await tally.flush();
  const usage = await counters.readUsage(["alice", "bob"], [today]);
  assert.deepEqual(usage.get("alice")?.get(today), {
    jobs: 6,
    failures: 1,
    prompt_tokens: 12,
    completion_tokens: 18,
    apis: { chat: 5, messages: 1 },
  });
  assert.equal(usage.get("bob")?.get(today)?.jobs, 2, "the failed write's job counted once");
  assert.ok(lines.some((line) => line.includes("kept for the next write")), "the failure logged");

  // A sum whose every write fails is given up after three, loudly, and nothing else is held up.
  broken.add("carol");
  tally.add("carol", today, job("chat"));
  await eventually(
    () => lines.some((line) => line.includes("it is lost")),
    "carol's sum lost",
    5_000,
  );
  assert.equal(writesOf("carol"), 3, "three writes, then given up");
  await tally.flush();
  assert.equal(writesOf("carol"), 3, "nothing left to write at the stop");
});
