/**
 * What the worker holds and how it keeps it: how many messages it waits for
 * before receiving again, and which holds each heartbeat extends.
 */
import assert from "node:assert/strict";
import { createLogger } from "../lib/core/log.ts";
import { beatInterval, capacity, extensionDue, refillBatch } from "../lib/worker/job_worker.ts";
import { echoAnswer } from "./support/stand_in_llm.ts";
import { backendTest } from "./support/gateway.ts";

Deno.test("capacity() holds one spare job per place, at most sixteen", () => {
  assert.deepEqual(
    [1, 2, 8, 16, 17, 64, 1024].map((concurrency) => capacity({ concurrency })),
    [2, 4, 16, 32, 33, 80, 1040],
  );
});

Deno.test("refillBatch() waits for half the spare jobs, rounded up, within one receive's worth", () => {
  assert.deepEqual(
    [1, 2, 3, 4, 16, 19, 64, 1024].map((concurrency) => refillBatch({ concurrency })),
    [1, 1, 2, 2, 8, 8, 8, 8],
  );
});

Deno.test("refillBatch() leaves spare jobs to keep the places busy while it receives", () => {
  for (let concurrency = 1; concurrency <= 200; concurrency++) {
    const batch = refillBatch({ concurrency });
    const spare = capacity({ concurrency }) - concurrency;
    assert.ok(batch >= 1 && batch <= 10, `concurrency ${concurrency}: ${batch}`);
    // With more than one spare, some stay held while a batch is received and claimed.
    assert.ok(spare === 1 || batch < spare, `concurrency ${concurrency}: ${batch} of ${spare}`);
  }
});

Deno.test("extensionDue() skips a hold younger than half a beat and extends an older one", () => {
  const beat = beatInterval(60); // 20 s
  assert.equal(extensionDue(1_000, 1_000, beat), false);
  assert.equal(extensionDue(1_000, 1_000 + beat / 2 - 1, beat), false);
  assert.equal(extensionDue(1_000, 1_000 + beat / 2, beat), true);
  assert.equal(extensionDue(1_000, 1_000 + 3 * beat, beat), true);
});

Deno.test("extensionDue() lets no hold lapse while beats come up to nine tenths of a beat late", () => {
  // Every visibility timeout the settings allow from the smallest, the received moment at
  // every phase of the beat, and beats each late by a varying amount up to 0.9 of a beat.
  for (const seconds of [2, 3, 4, 5, 10, 60, 43200]) {
    const timeoutMs = seconds * 1000;
    const beat = beatInterval(seconds);
    for (let phase = 0; phase < 1; phase += 0.05) {
      let since = phase * beat; // received: hidden (or leased) until since + timeoutMs
      let beatAt = beat;
      for (let n = 0; n < 50; n++) {
        const late = ((n * 7) % 10) / 10 * 0.9 * beat;
        const now = beatAt + late;
        if (now >= since) {
          assert.ok(
            now < since + timeoutMs,
            `timeout ${seconds} s: the hold from ${since} lapsed before the beat at ${now}`,
          );
          if (extensionDue(since, now, beat)) since = now;
        }
        beatAt += beat;
      }
    }
  }
});

Deno.test("beatInterval() beats three times per visibility timeout, at most twice a second", () => {
  assert.equal(beatInterval(60), 20_000);
  assert.equal(beatInterval(3), 1_000);
  assert.equal(beatInterval(2), 2000 / 3);
  assert.equal(beatInterval(1), 500);
});

backendTest(
  "a job waiting for a place past the visibility timeout stays hidden and leased, and runs once",
  async (t, start) => {
    const echo = echoAnswer("vllm");
    // One place, and answers slower than the visibility timeout: the second job is claimed
    // and then waits for the place longer than its message would stay hidden unextended.
    // Not the smallest timeout (2 s): with test files running at once on a busy machine, a
    // beat may come over a second late, which lapses a hold of 2 s but not one of 4 s.
    const gateway = await start({
      env: { VISIBILITY_TIMEOUT_S: "4", VLLM_CONCURRENCY: "1" },
      vllmAnswer: async (request) => {
        await new Promise((r) => setTimeout(r, 4500));
        return echo(request);
      },
    });
    const lines: string[] = [];
    const logger = createLogger({ write: (line) => lines.push(line) });
    const jobs = [
      await gateway.send({ conversation_id: "first", user_message: "first" }),
      await gateway.send({ conversation_id: "second", user_message: "second" }),
    ];

    await t.step("one worker holds both jobs; a second worker waits for anything", async () => {
      await gateway.startWorker({ logger });
      await gateway.depthBecomes(
        "default",
        { waiting: 0, in_flight: 2, dead: 0 },
        "one worker to hold both jobs",
      );
      // Were a message or a lease to lapse, this worker would take the job, or run it again.
      await gateway.startWorker({ logger });
    });

    await t.step(
      "both run once, one after the other, and nothing was delivered twice",
      async () => {
        for (const { job_id } of jobs) {
          assert.equal((await gateway.waitForJob(job_id)).status, "succeeded");
        }
        assert.equal(gateway.vllm.requests.length, 2, lines.join("\n"));
        assert.deepEqual(
          lines.filter((line) => /held by another run|dropping this delivery/.test(line)),
          [],
        );
        await gateway.depthBecomes("default", { waiting: 0, in_flight: 0, dead: 0 });
      },
    );
  },
);

backendTest(
  "a job whose lease a dead run left is waited out, not renewed by the next worker's heartbeat",
  async (_t, start) => {
    // Heartbeats every second: many of them fall within the dead run's lease.
    const gateway = await start({ env: { VISIBILITY_TIMEOUT_S: "3" } });
    const { job_id } = await gateway.send({ conversation_id: "lease", user_message: "hi" });
    // A run that claimed the job and died: its lease holds for 3 s more.
    assert.equal((await gateway.services.store.startJob(job_id, 3_000)).state, "started");
    await gateway.startWorker();
    const job = await gateway.waitForJob(job_id, 30_000);
    assert.equal(job.status, "succeeded");
    assert.equal(job.attempts, 2, "the dead run's attempt, and the one that ran it");
  },
);
