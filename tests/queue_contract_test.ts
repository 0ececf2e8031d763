/**
 * The JobQueue contract, run against every implementation (the Deno KV queue;
 * SQS on Moto): lanes, redelivery, dead letters; and what only one of them
 * has (the KV queue's legacy layout, SQS's account in its URLs).
 */
import assert from "node:assert/strict";
import type { QueueRef } from "../lib/core/queue.ts";
import { KvJobQueue } from "../lib/storage/embedded/kv_queue.ts";
import type { SqsJobQueue } from "../lib/storage/aws/sqs_queue.ts";
import { backendTest, startTestGateway } from "./support/gateway.ts";
import { skipWithoutAwsEmulators, startAwsEmulators } from "./support/aws_emulators.ts";
import { DEFAULT, depthBecomes, now, PRIORITY } from "./support/contract_jobs.ts";
import { eventually } from "./support/wait.ts";

backendTest(
  "the queue delivers priority and default lanes with SQS's redelivery rules",
  async (t, start) => {
    const { services: { queue }, config } = await start();
    const ticket = (jobId: string) => ({ job_id: jobId, conversation_id: "c", route: "vllm" });

    await t.step("a sent ticket is received once, then hidden while in flight", async () => {
      await queue.send("default", ticket("j1"));
      const [message] = await queue.receive(DEFAULT, now);
      assert.deepEqual(message.ticket, ticket("j1"));
      assert.equal(message.lane, "default");
      assert.equal(message.receiveCount, 1);
      assert.deepEqual(await queue.receive(DEFAULT, now), []);
      await depthBecomes(queue, DEFAULT, { waiting: 0, in_flight: 1, dead: 0 });
      await queue.delete(message);
      await depthBecomes(queue, DEFAULT, { waiting: 0, in_flight: 0, dead: 0 });
    });

    await t.step("lanes are separate", async () => {
      await queue.send("priority", ticket("p1"));
      assert.deepEqual(await queue.receive(DEFAULT, now), []);
      const [message] = await queue.receive(PRIORITY, now);
      assert.equal(message.ticket.job_id, "p1");
      await queue.delete(message);
    });

    await t.step("a batch receive takes several messages at once", async () => {
      for (const id of ["b1", "b2", "b3"]) await queue.send("default", ticket(id));
      const messages = await queue.receive(DEFAULT, now);
      assert.deepEqual(messages.map((m) => m.ticket.job_id).sort(), ["b1", "b2", "b3"]);
      for (const message of messages) await queue.delete(message);
    });

    await t.step("a released message comes back with a higher receive count", async () => {
      await queue.send("default", ticket("j2"));
      const [first] = await queue.receive(DEFAULT, now);
      await queue.returnAfter(first, 0);
      const [second] = await queue.receive(DEFAULT, now);
      assert.equal(second.ticket.job_id, "j2");
      assert.equal(second.receiveCount, 2);
      await queue.delete(second);
    });

    await t.step("past maxReceiveCount a message moves to the dead-letter queue", async () => {
      const limit = await queue.maxReceiveCount(DEFAULT);
      assert.equal(limit, config.maxAttempts);
      await queue.send("default", ticket("doomed"));
      for (let i = 1; i <= limit!; i++) {
        const [message] = await queue.receive(DEFAULT, now);
        assert.equal(message.receiveCount, i);
        await queue.returnAfter(message, 0);
      }
      assert.deepEqual(await queue.receive(DEFAULT, now), []);
      await depthBecomes(queue, DEFAULT, { waiting: 0, in_flight: 0, dead: 1 });
    });

    await t.step("a message given up for good moves to the dead-letter queue at once", async () => {
      await queue.send("priority", ticket("hopeless"));
      const [message] = await queue.receive(PRIORITY, now);
      await queue.deadLetter(message);
      await depthBecomes(queue, PRIORITY, { waiting: 0, in_flight: 0, dead: 1 });
    });

    await t.step("a long poll returns as soon as a message is sent", async () => {
      const received = queue.receive(PRIORITY, { ...now, waitSeconds: 5 });
      await new Promise((r) => setTimeout(r, 200));
      await queue.send("priority", ticket("late"));
      const [message] = await received;
      assert.equal(message?.ticket.job_id, "late");
      await queue.delete(message);
    });

    await t.step(
      "a long poll asked to stop early loses nothing that arrives meanwhile",
      async () => {
        // The embedded queue stops at once; SQS cannot recall a receive in flight,
        // so that one runs to its end and returns what arrived. Either way the
        // message is received exactly once, on its first delivery.
        const controller = new AbortController();
        const received = queue.receive(DEFAULT, {
          ...now,
          waitSeconds: 2,
          signal: controller.signal,
        });
        controller.abort();
        await queue.send("default", ticket("meanwhile"));
        const [message] = [...await received, ...await queue.receive(DEFAULT, now)];
        assert.equal(message?.ticket.job_id, "meanwhile");
        assert.equal(message.receiveCount, 1);
        await queue.delete(message);
      },
    );

    await t.step("a delayed message stays hidden until its delay has passed", async () => {
      await queue.send("default", ticket("later"), { delaySeconds: 1 });
      assert.deepEqual(await queue.receive(DEFAULT, now), []);
      let got: Awaited<ReturnType<typeof queue.receive>> = [];
      await eventually(
        async () => {
          got = await queue.receive(DEFAULT, now);
          return got.length > 0;
        },
        "the delayed message to be delivered",
        10_000,
      );
      assert.equal(got[0].ticket.job_id, "later");
      await queue.delete(got[0]);
    });

    await t.step("each backend has its own queues", async () => {
      await queue.send("default", { job_id: "o1", conversation_id: "c", route: "ollama" });
      assert.deepEqual(await queue.receive(DEFAULT, now), [], "not on vllm's queue");
      const [message] = await queue.receive({ backend: "ollama", lane: "default" }, now);
      assert.equal(message.ticket.job_id, "o1");
      assert.equal(message.backend, "ollama");
      await queue.delete(message);
      await depthBecomes(queue, { backend: "ollama", lane: "default" }, {
        waiting: 0,
        in_flight: 0,
        dead: 0,
      });
    });

    await t.step("a ticket that names no backend is refused, and nothing is sent", async () => {
      await assert.rejects(
        () => queue.send("default", { job_id: "x", conversation_id: "c", route: "" }),
        TypeError,
      );
      await depthBecomes(queue, DEFAULT, { waiting: 0, in_flight: 0 });
    });

    await t.step("a line check travels as a ticket of its own", async () => {
      const check = {
        job_id: "j9",
        conversation_id: "c",
        route: "vllm",
        line_check: true as const,
      };
      await queue.send("default", check);
      const [message] = await queue.receive(DEFAULT, now);
      assert.deepEqual(message.ticket, check);
      await queue.delete(message);
    });

    await t.step("dead letters are read in place, a page at a time", async () => {
      const first = await queue.receiveDeadLetters(DEFAULT, { maxMessages: 10, hideSeconds: 60 });
      assert.deepEqual(first.map((t) => t.job_id), ["doomed"]);
      assert.deepEqual(
        await queue.receiveDeadLetters(DEFAULT, { maxMessages: 10, hideSeconds: 60 }),
        [],
        "what was read stays hidden for hideSeconds",
      );
      await depthBecomes(queue, DEFAULT, { waiting: 0, in_flight: 0, dead: 1 });
      const priority = await queue.receiveDeadLetters(PRIORITY, {
        maxMessages: 10,
        hideSeconds: 1,
      });
      assert.deepEqual(priority.map((t) => t.job_id), ["hopeless"]);
      await eventually(
        async () =>
          (await queue.receiveDeadLetters(PRIORITY, { maxMessages: 10, hideSeconds: 1 }))
            .length === 1,
        "the dead letter to show again once hideSeconds passed",
        10_000,
      );
    });
  },
);

Deno.test("KvJobQueue.adoptLegacyMessages() moves messages of the shared-lane layout to their backend's queues", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kv-legacy-" });
  const kv = await Deno.openKv(`${dir}/gateway.sqlite3`);
  try {
    // As the queue stored them before each backend had its own: ["queue", lane, time, n, id].
    const legacy = (lane: string, n: number, ticket: Record<string, unknown>) =>
      kv.set(["queue", lane, Date.now(), n, crypto.randomUUID()], {
        ticket,
        receiveCount: 0,
        visibleAt: 0,
        receipt: "",
      });
    await legacy("default", 0, { job_id: "t1", conversation_id: "c", route: "vllm" });
    await legacy("priority", 1, { job_id: "i1", conversation_id: "c", route: "ollama" });
    await legacy("default", 2, { job_id: "l1", conversation_id: "c", route: "", line_check: true });
    const queue = new KvJobQueue(kv, { maxReceiveCount: 3 });

    assert.equal(await queue.adoptLegacyMessages("vllm"), 3);
    assert.equal(await queue.adoptLegacyMessages("vllm"), 0, "nothing left to move");
    const ids = async (of: QueueRef) => (await queue.receive(of, now)).map((m) => m.ticket.job_id);
    assert.deepEqual(await ids({ backend: "vllm", lane: "default" }), ["t1", "l1"]);
    assert.deepEqual(await ids({ backend: "ollama", lane: "priority" }), ["i1"]);
  } finally {
    kv.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("KvJobQueue.receiveDeadLetters() reads on where the last read stopped, so no dead letter goes unseen behind a full page", async () => {
  // The dead-letter sweep reads at most 100 per queue each time. Read oldest
  // first every time, a lane holding more than that would hide every newer
  // dead letter from it for good. SQS samples a large queue instead, so every
  // message turns up in time; the embedded queue pages on and wraps around.
  const dir = await Deno.makeTempDir({ prefix: "kv-dead-pages-" });
  const kv = await Deno.openKv(`${dir}/gateway.sqlite3`);
  try {
    const queue = new KvJobQueue(kv, { maxReceiveCount: 1 });
    const count = 105;
    for (let i = 0; i < count; i++) {
      await queue.send("default", { job_id: `dead-${i}`, conversation_id: "c", route: "vllm" });
    }
    for (let taken = 0; taken < count;) {
      const messages = await queue.receive(DEFAULT, now);
      for (const message of messages) await queue.deadLetter(message);
      taken += messages.length;
    }
    await depthBecomes(queue, DEFAULT, { waiting: 0, in_flight: 0, dead: count });

    // Pages that hide nothing: read oldest first, each would be the same page.
    const seen = new Set<string>();
    const pages: string[][] = [];
    for (let i = 0; i < Math.ceil(count / 10); i++) {
      const page = await queue.receiveDeadLetters(DEFAULT, { maxMessages: 10, hideSeconds: 0 });
      pages.push(page.map((t) => t.job_id));
      for (const ticket of page) seen.add(ticket.job_id);
    }
    assert.equal(seen.size, count, `every dead letter seen once in ${pages.length} reads`);
    assert.deepEqual(pages.at(-1), ["dead-100", "dead-101", "dead-102", "dead-103", "dead-104"]);
    const again = await queue.receiveDeadLetters(DEFAULT, { maxMessages: 3, hideSeconds: 0 });
    assert.deepEqual(
      again.map((t) => t.job_id),
      ["dead-0", "dead-1", "dead-2"],
      "past the end, from the start",
    );
  } finally {
    kv.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/** A job of an owner, created at a given time, so listings have a known order. */

Deno.test({
  name: "on SQS the queues' URLs name the account, which the blob bucket must belong to [aws]",
  ignore: skipWithoutAwsEmulators(),
  async fn() {
    const emulators = await startAwsEmulators();
    const gateway = await startTestGateway("aws", { emulators }).catch(async (err) => {
      await emulators.stop();
      throw err;
    });
    try {
      // Moto's account; on AWS it is the stack's, and S3 refuses a bucket someone else owns.
      const queue = gateway.services.queue as SqsJobQueue;
      assert.equal(await queue.ownerAccount(DEFAULT), "123456789012");
    } finally {
      await gateway.stop();
      await emulators.stop();
    }
  },
});
