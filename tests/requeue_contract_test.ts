/**
 * Sending failed jobs back to run, against every implementation: a failed
 * job requeued into its line by plan, the record of a redrive request, and a
 * queue's dead letters moved back to it.
 */
import assert from "node:assert/strict";
import type { QueueRef } from "../lib/core/queue.ts";
import { backendTest } from "./support/gateway.ts";
import {
  DEFAULT,
  depthBecomes,
  LEASE_MS,
  now,
  ownedJob,
  PRIORITY,
  replied,
  started,
} from "./support/contract_jobs.ts";

backendTest(
  "a failed job goes back into its line by plan, and only while nothing changed",
  async (t, start) => {
    const { services: { store } } = await start();
    const base = Date.now() - 60_000;
    const [failed, later] = [1, 2].map((i) =>
      ownedJob(undefined, new Date(base + i * 1000), "requeue")
    );
    // The first job runs and fails and hands its turn on; a later one joins the line.
    await store.createJob(failed);
    await store.markSent(failed.job_id, 0);
    await started(store, failed.job_id);
    await store.failJob(failed.job_id, "backend down");
    await store.passTurn("requeue", failed.job_id);
    await store.createJob(later);
    await store.markSent(later.job_id, 0);
    const line = await store.lineOf("requeue");

    await t.step("the line lists the unfinished jobs in order", () => {
      assert.deepEqual(line, [later.job_id]);
    });

    await t.step("a plan made on another line changes nothing", async () => {
      const job = (await store.getJob(failed.job_id))!;
      assert.equal(
        await store.requeueFailedJob(job, { line: [], position: 0, displaced: [] }),
        undefined,
      );
      assert.equal((await store.getJob(failed.job_id))?.status, "failed");
      assert.deepEqual(await store.lineOf("requeue"), line);
    });

    await t.step("a job that is not failed is not requeued", async () => {
      const job = (await store.getJob(later.job_id))!;
      assert.equal(
        await store.requeueFailedJob(job, { line, position: 0, displaced: [] }),
        undefined,
      );
    });

    await t.step(
      "the job goes before the later job, whose generation is counted, in one step",
      async () => {
        const job = (await store.getJob(failed.job_id))!;
        const queued = await store.requeueFailedJob(job, {
          line,
          position: 0,
          displaced: [{ job_id: later.job_id, generation: 0 }],
        });
        assert.equal(queued?.status, "queued");
        assert.deepEqual(
          [queued?.attempts, queued?.retries, queued?.generation, queued?.finished_at],
          [0, 1, 1, undefined],
        );
        assert.ok(queued?.retried_at);
        assert.equal(queued?.sent_at, undefined, "its next message is yet to be sent");
        assert.deepEqual(await store.lineOf("requeue"), [failed.job_id, ...line]);
        const displaced = await store.getJob(later.job_id);
        assert.equal(displaced?.generation, 1);
        assert.equal(displaced?.sent_at, undefined, "the message it was sent is out of date");
      },
    );

    await t.step("a ticket of an older generation starts nothing", async () => {
      const stale = await store.startJob(later.job_id, LEASE_MS);
      assert.equal(stale.state, "stale");
      assert.equal((await store.getJob(later.job_id))?.status, "queued", "not claimed");
      const current = await store.startJob(later.job_id, LEASE_MS, { generation: 1 });
      assert.equal(current.state, "started");
    });

    await t.step("a displaced job that has started makes the plan fail", async () => {
      const other = ownedJob(undefined, new Date(base + 5000), "requeue-2");
      const next = ownedJob(undefined, new Date(base + 6000), "requeue-2");
      await store.createJob(other);
      await store.createJob(next);
      await started(store, other.job_id);
      await store.failJob(other.job_id, "down");
      await store.passTurn("requeue-2", other.job_id);
      await started(store, next.job_id);
      const job = (await store.getJob(other.job_id))!;
      assert.equal(
        await store.requeueFailedJob(job, {
          line: [next.job_id],
          position: 0,
          displaced: [{ job_id: next.job_id, generation: 0 }],
        }),
        undefined,
      );
      assert.deepEqual(await store.lineOf("requeue-2"), [next.job_id]);
      assert.equal((await store.getJob(other.job_id))?.status, "failed");
    });

    await t.step("a completed exchange records the creation time of its job", async () => {
      const job = ownedJob(undefined, new Date(base + 9000), "answered");
      await store.createJob(job);
      await store.completeJob(await started(store, job.job_id), replied("ok"));
      assert.equal((await store.getConversation("answered"))?.latest_job_at, job.created_at);
    });
  },
);

backendTest("the store remembers when a redrive was asked for", async (_t, start) => {
  const { services: { store } } = await start();
  assert.equal(await store.lastRedriveRequest(), undefined);
  const asked = await store.requestRedrive();
  assert.equal((await store.lastRedriveRequest())?.getTime(), asked.getTime());
  assert.equal(await store.getJob("redrive-request"), undefined, "the request is no job");
});

backendTest(
  "a redrive moves a queue's dead letters back to it as new messages, and no other queue's",
  async (_t, start) => {
    const { services: { queue }, backend } = await start();
    const OLLAMA: QueueRef = { backend: "ollama", lane: "default" };
    const ticket = (jobId: string, route = "vllm") => ({
      job_id: jobId,
      conversation_id: "c",
      route,
    });
    for (const id of ["d1", "d2"]) await queue.send("default", ticket(id));
    await queue.send("default", ticket("o1", "ollama"));
    for (const message of await queue.receive(DEFAULT, now)) await queue.deadLetter(message);
    for (const message of await queue.receive(OLLAMA, now)) await queue.deadLetter(message);
    await depthBecomes(queue, DEFAULT, { waiting: 0, in_flight: 0, dead: 2 });
    await depthBecomes(queue, OLLAMA, { waiting: 0, in_flight: 0, dead: 1 });

    const result = await queue.redriveDeadLetters(DEFAULT);
    // Moto has no SQS move tasks: the queue copies instead. On AWS a move task runs.
    assert.equal(result.method, backend === "embedded" ? "dead_lane" : "copy");
    assert.deepEqual([result.moved, result.left], [2, 0]);
    await depthBecomes(queue, DEFAULT, { waiting: 2, in_flight: 0, dead: 0 });
    const back = await queue.receive(DEFAULT, now);
    assert.deepEqual(back.map((m) => m.ticket.job_id).sort(), ["d1", "d2"]);
    assert.deepEqual(back.map((m) => m.receiveCount), [1, 1], "delivered as new messages");
    await depthBecomes(queue, OLLAMA, { waiting: 0, in_flight: 0, dead: 1 });
    assert.deepEqual(await queue.redriveDeadLetters(PRIORITY), {
      method: backend === "embedded" ? "dead_lane" : "copy",
      moved: 0,
      left: 0,
    });
  },
);

backendTest(
  "a redrive leaves a dead letter the worker refused for that same redrive, and moves older refusals",
  async (_t, start) => {
    const { services: { queue } } = await start();
    const requestedAt = new Date();
    const refusedAt = (at: Date) => ({
      job_id: `refused-${at.getTime()}`,
      conversation_id: "c",
      route: "vllm",
      refused_redrive: at.toISOString(),
    });
    const earlier = new Date(requestedAt.getTime() - 60_000);
    for (const at of [requestedAt, earlier]) await queue.send("default", refusedAt(at));
    await queue.send("default", { job_id: "plain", conversation_id: "c", route: "vllm" });
    for (const message of await queue.receive(DEFAULT, now)) await queue.deadLetter(message);
    await depthBecomes(queue, DEFAULT, { waiting: 0, in_flight: 0, dead: 3 });

    const result = await queue.redriveDeadLetters(DEFAULT, requestedAt);
    assert.deepEqual([result.moved, result.left], [2, 1]);
    // Left visible: the next redrive, or the console, sees it at once.
    await depthBecomes(queue, DEFAULT, { waiting: 2, in_flight: 0, dead: 1 });
    const back = await queue.receive(DEFAULT, now);
    assert.deepEqual(
      back.map((m) => m.ticket.job_id).sort(),
      ["plain", `refused-${earlier.getTime()}`],
    );
  },
);

backendTest(
  "a redrive waits for a dead letter a reader holds for a moment, and moves it",
  async (_t, start) => {
    const { services: { queue } } = await start();
    await queue.send("default", { job_id: "held", conversation_id: "c", route: "vllm" });
    for (const message of await queue.receive(DEFAULT, now)) await queue.deadLetter(message);
    await depthBecomes(queue, DEFAULT, { waiting: 0, in_flight: 0, dead: 1 });
    // The worker's sweep reads it and hides it for a moment, as a redrive starts.
    const read = await queue.receiveDeadLetters(DEFAULT, { maxMessages: 10, hideSeconds: 2 });
    assert.deepEqual(read.map((t) => t.job_id), ["held"]);

    const result = await queue.redriveDeadLetters(DEFAULT, new Date());
    assert.deepEqual([result.moved, result.left], [1, 0]);
    await depthBecomes(queue, DEFAULT, { waiting: 1, in_flight: 0, dead: 0 });
  },
);
