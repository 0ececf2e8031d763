/**
 * One contract for the Store and JobQueue interfaces, run against every
 * implementation (Deno KV always, DynamoDB and SQS on Moto), so they cannot drift.
 */
import assert from "node:assert/strict";
import { newJob } from "../lib/jobs.ts";
import { userMessage } from "../lib/messages.ts";
import type { ReceiveOptions } from "../lib/queue.ts";
import { JobNotFoundError } from "../lib/store.ts";
import { backendTest } from "./support/gateway.ts";

function aJob(conversationId = "conv") {
  return newJob({
    conversationId,
    route: "vllm",
    model: "m",
    priority: "normal",
    userMessage: userMessage("hello"),
    ttlDays: 1,
  });
}

const now: ReceiveOptions = { maxMessages: 10, waitSeconds: 0, visibilitySeconds: 60 };

backendTest(
  "the store keeps job records and appends each job's exchange exactly once",
  async (t, start) => {
    const { services: { store } } = await start();

    await t.step("an unknown conversation or job is undefined", async () => {
      assert.equal(await store.getConversation("nobody"), undefined);
      assert.equal(await store.getJob("no-job"), undefined);
    });

    await t.step("a created job reads back as it was written", async () => {
      const job = aJob();
      await store.createJob(job);
      assert.deepEqual(await store.getJob(job.job_id), job);
    });

    await t.step("creating the same job twice is refused", async () => {
      const job = aJob();
      await store.createJob(job);
      await assert.rejects(() => store.createJob(job));
    });

    await t.step("starting a job marks it running with its attempt", async () => {
      const job = aJob();
      await store.createJob(job);
      const started = await store.startJob(job.job_id, 2);
      assert.equal(started?.status, "running");
      assert.equal(started?.attempts, 2);
      assert.equal((await store.getJob(job.job_id))?.status, "running");
    });

    await t.step("starting a job that has no record throws JobNotFoundError", async () => {
      await assert.rejects(() => store.startJob("missing", 1), JobNotFoundError);
    });

    await t.step(
      "completing appends user then assistant, and a second completion appends nothing",
      async () => {
        const job = aJob("once");
        await store.createJob(job);
        const running = (await store.startJob(job.job_id, 1))!;
        assert.equal(
          await store.completeJob(running, { role: "assistant", content: "hi there" }),
          "completed",
        );
        assert.equal(
          await store.completeJob(running, { role: "assistant", content: "again" }),
          "already_completed",
        );
        const conversation = await store.getConversation("once");
        assert.deepEqual(conversation?.messages, [
          { role: "user", content: "hello" },
          { role: "assistant", content: "hi there" },
        ]);
        const done = await store.getJob(job.job_id);
        assert.equal(done?.status, "succeeded");
        assert.equal(done?.reply, "hi there");
        assert.equal(
          await store.startJob(job.job_id, 2),
          undefined,
          "a succeeded job is not started again",
        );
      },
    );

    await t.step(
      "concurrent completions of different jobs both land in the conversation",
      async () => {
        const jobs = [aJob("busy"), aJob("busy"), aJob("busy"), aJob("busy")];
        for (const job of jobs) await store.createJob(job);
        await Promise.all(jobs.map(async (job, i) => {
          const running = (await store.startJob(job.job_id, 1))!;
          await store.completeJob(running, { role: "assistant", content: `reply ${i}` });
        }));
        const messages = (await store.getConversation("busy"))?.messages ?? [];
        assert.equal(messages.length, 8);
        assert.deepEqual(
          messages.filter((m) => m.role === "assistant").map((m) => m.content).sort(),
          ["reply 0", "reply 1", "reply 2", "reply 3"],
        );
      },
    );

    await t.step("retry and failure record the reason but never undo a success", async () => {
      const job = aJob();
      await store.createJob(job);
      await store.startJob(job.job_id, 1);
      await store.retryJob(job.job_id, "attempt 1 failed");
      assert.deepEqual(
        (({ status, error }) => ({ status, error }))((await store.getJob(job.job_id))!),
        { status: "queued", error: "attempt 1 failed" },
      );
      await store.failJob(job.job_id, "gave up");
      const failed = await store.getJob(job.job_id);
      assert.equal(failed?.status, "failed");
      assert.equal(failed?.error, "gave up");
      assert.ok(failed?.finished_at);

      const succeeded = aJob();
      await store.createJob(succeeded);
      await store.completeJob((await store.startJob(succeeded.job_id, 1))!, {
        role: "assistant",
        content: "ok",
      });
      await store.failJob(succeeded.job_id, "late failure from a duplicate delivery");
      assert.equal((await store.getJob(succeeded.job_id))?.status, "succeeded");
    });
  },
);

backendTest(
  "the queue delivers priority and default lanes with SQS's redelivery rules",
  async (t, start) => {
    const { services: { queue }, config } = await start();

    await t.step("a sent ticket is received once, then hidden while in flight", async () => {
      await queue.send("default", { job_id: "j1", conversation_id: "c" });
      const [message] = await queue.receive("default", now);
      assert.deepEqual(message.ticket, { job_id: "j1", conversation_id: "c" });
      assert.equal(message.lane, "default");
      assert.equal(message.receiveCount, 1);
      assert.deepEqual(await queue.receive("default", now), []);
      assert.deepEqual(await queue.depth("default"), { waiting: 0, in_flight: 1, dead: 0 });
      await queue.delete(message);
      assert.deepEqual(await queue.depth("default"), { waiting: 0, in_flight: 0, dead: 0 });
    });

    await t.step("lanes are separate", async () => {
      await queue.send("priority", { job_id: "p1", conversation_id: "c" });
      assert.deepEqual(await queue.receive("default", now), []);
      const [message] = await queue.receive("priority", now);
      assert.equal(message.ticket.job_id, "p1");
      await queue.delete(message);
    });

    await t.step("a released message comes back with a higher receive count", async () => {
      await queue.send("default", { job_id: "j2", conversation_id: "c" });
      const [first] = await queue.receive("default", now);
      await queue.release(first, 0);
      const [second] = await queue.receive("default", now);
      assert.equal(second.ticket.job_id, "j2");
      assert.equal(second.receiveCount, 2);
      await queue.delete(second);
    });

    await t.step("past maxReceiveCount a message moves to the dead-letter queue", async () => {
      const limit = await queue.maxReceiveCount("default");
      assert.equal(limit, config.maxAttempts);
      await queue.send("default", { job_id: "doomed", conversation_id: "c" });
      for (let i = 1; i <= limit!; i++) {
        const [message] = await queue.receive("default", now);
        assert.equal(message.receiveCount, i);
        await queue.release(message, 0);
      }
      assert.deepEqual(await queue.receive("default", now), []);
      assert.deepEqual(await queue.depth("default"), { waiting: 0, in_flight: 0, dead: 1 });
    });

    await t.step("a long poll returns as soon as a message is sent", async () => {
      const received = queue.receive("priority", { ...now, waitSeconds: 5 });
      await new Promise((r) => setTimeout(r, 200));
      await queue.send("priority", { job_id: "late", conversation_id: "c" });
      const [message] = await received;
      assert.equal(message?.ticket.job_id, "late");
      await queue.delete(message);
    });

    await t.step("an aborted long poll ends without a message", async () => {
      const controller = new AbortController();
      const received = queue.receive("default", {
        ...now,
        waitSeconds: 5,
        signal: controller.signal,
      });
      setTimeout(() => controller.abort(), 100);
      assert.deepEqual(await received, []);
    });
  },
);
