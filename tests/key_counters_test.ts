/**
 * The per-key counters (lib/core/key_counters.ts) on both stores: windows
 * that count up to their caps and no further, even under concurrent
 * requests; sets of jobs that hold at most their limit and drop members
 * whose jobs no longer count; usage per day.
 */
import assert from "node:assert/strict";
import {
  addUsage,
  dayOf,
  joinSet,
  type KeyCounters,
  slotMember,
  usageOfJob,
  windowAt,
} from "../lib/core/key_counters.ts";
import { newJob } from "../lib/core/jobs.ts";
import { userMessage } from "../lib/core/messages.ts";
import { backendTest } from "./support/gateway.ts";

const OWNER = "0123456789abcdef";

function aJob() {
  return newJob({
    conversationId: crypto.randomUUID(),
    route: "vllm",
    model: "m",
    priority: "normal",
    userMessage: userMessage("hello"),
    ttlDays: 1,
    recordFields: { owner: OWNER, mode: "stateless" },
  });
}

backendTest(
  "a window counts requests up to its caps and no further, at once or in turn",
  async (t, start) => {
    const { services } = await start();
    const counters: KeyCounters = services.counters;
    const window = windowAt(Date.now(), 60);

    await t.step(
      "in turn: the third request of a cap of two is refused and changes nothing",
      async () => {
        const caps = { requests: 2 };
        assert.deepEqual(await counters.countRequest(OWNER, window, 10, caps), {
          counted: true,
          counts: { requests: 1, tokens: 10 },
        });
        assert.equal((await counters.countRequest(OWNER, window, 5, caps)).counted, true);
        assert.deepEqual(await counters.countRequest(OWNER, window, 7, caps), {
          counted: false,
          counts: { requests: 2, tokens: 15 },
        });
        assert.deepEqual(await counters.windowCounts(OWNER, window), { requests: 2, tokens: 15 });
      },
    );

    await t.step(
      "tokens: a window at its cap refuses, and a correction gives room back",
      async () => {
        const other = { start: window.start + 60, seconds: 60 };
        assert.equal(
          (await counters.countRequest(OWNER, other, 100, { tokens: 100 })).counted,
          true,
        );
        assert.equal(
          (await counters.countRequest(OWNER, other, 1, { tokens: 100 })).counted,
          false,
        );
        await counters.addToWindow(OWNER, other, { tokens: -40 });
        assert.deepEqual(await counters.windowCounts(OWNER, other), { requests: 1, tokens: 60 });
        assert.equal((await counters.countRequest(OWNER, other, 1, { tokens: 100 })).counted, true);
      },
    );

    await t.step(
      "at once: twenty requests against a cap of seven count exactly seven",
      async () => {
        const fresh = { start: window.start + 600, seconds: 60 };
        const results = await Promise.all(
          Array.from({ length: 20 }, () => counters.countRequest(OWNER, fresh, 1, { requests: 7 })),
        );
        assert.equal(results.filter((r) => r.counted).length, 7);
        assert.deepEqual(await counters.windowCounts(OWNER, fresh), { requests: 7, tokens: 7 });
      },
    );
  },
);

backendTest(
  "a key's set holds at most its limit and drops members whose jobs no longer count",
  async (t, start) => {
    const { services } = await start();
    const { counters, store } = services;
    const grace = { graceMs: 60_000 };

    await t.step("at once: twenty joins against a limit of five let exactly five in", async () => {
      const results = await Promise.all(
        Array.from(
          { length: 20 },
          (_, i) => counters.addMember("running", "racer", slotMember(`job-${i}`), 5),
        ),
      );
      assert.equal(results.filter((r) => r.joined).length, 5);
    });

    await t.step("a waiting job's member counts until its job starts", async () => {
      const [first, second, third] = [aJob(), aJob(), aJob()];
      for (const job of [first, second, third]) await store.createJob(job);
      const join = (jobId: string) =>
        joinSet(counters, "waiting", OWNER, slotMember(jobId), 2, grace);
      assert.equal((await join(first.job_id)).joined, true);
      assert.equal((await join(second.job_id)).joined, true);
      assert.equal((await join(third.job_id)).joined, false, "two jobs wait already");
      await store.startJob(first.job_id, 60_000);
      const after = await join(third.job_id);
      assert.equal(after.joined, true, "the started job's member was dropped");
      assert.equal(after.members.length, 2);
    });

    await t.step(
      "a running member counts while its lease holds, and a missing job only briefly",
      async () => {
        const [running, lapsed] = [aJob(), aJob()];
        for (const job of [running, lapsed]) await store.createJob(job);
        await store.startJob(running.job_id, 60_000);
        await store.startJob(lapsed.job_id, 1);
        const owner = "fedcba9876543210";
        const join = (member: string) => joinSet(counters, "running", owner, member, 2, grace);
        assert.equal((await join(slotMember(running.job_id))).joined, true);
        assert.equal((await join(slotMember(lapsed.job_id))).joined, true);
        await new Promise((r) => setTimeout(r, 5));
        const young = slotMember("never-written");
        const replaced = await join(young);
        assert.equal(replaced.joined, true, "the lapsed lease's member was dropped");
        const full = await join(slotMember(aJob().job_id));
        assert.equal(full.joined, false, "a young member of a job not yet written still counts");
        const old = slotMember("never-written", Date.now() - 120_000);
        await counters.removeMembers("running", owner, [young]);
        await counters.addMember("running", owner, old, 2);
        assert.equal((await join(slotMember("another"))).joined, true, "an old one does not");
      },
    );
  },
);

backendTest("usage adds up per key and day, and reads back by key", async (_t, start) => {
  const { services } = await start();
  const { counters } = services;
  const today = dayOf(Date.now());
  const yesterday = dayOf(Date.now() - 86_400_000);
  await counters.recordUsage(
    OWNER,
    today,
    usageOfJob({
      failed: false,
      prompt_tokens: 12,
      completion_tokens: 30,
      api: "chat.completions",
    }),
  );
  // What a worker summed over several jobs is one write.
  await counters.recordUsage(
    OWNER,
    today,
    addUsage(
      usageOfJob({ failed: true, prompt_tokens: 5, completion_tokens: 0, api: "messages" }),
      usageOfJob({ failed: false, prompt_tokens: 3, completion_tokens: 4, api: "messages" }),
    ),
  );
  await counters.recordUsage(
    "another",
    yesterday,
    usageOfJob({ failed: false, prompt_tokens: 1, completion_tokens: 2, api: "chat" }),
  );
  const usage = await counters.readUsage([OWNER, "another", "nobody"], [yesterday, today]);
  assert.deepEqual(usage.get(OWNER)?.get(today), {
    jobs: 3,
    failures: 1,
    prompt_tokens: 20,
    completion_tokens: 34,
    apis: { "chat.completions": 1, messages: 2 },
  });
  assert.equal(usage.get(OWNER)?.has(yesterday), false);
  assert.equal(usage.get("another")?.get(yesterday)?.completion_tokens, 2);
  assert.equal(usage.has("nobody"), false);
});
