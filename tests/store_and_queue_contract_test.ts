/**
 * One contract for the Store and JobQueue interfaces, run against every
 * implementation (Deno KV always, DynamoDB and SQS on Moto), so they cannot drift.
 */
import assert from "node:assert/strict";
import { type Job, newJob } from "../lib/core/jobs.ts";
import { replyMessage, userMessage } from "../lib/core/messages.ts";
import type { WorkerRecord } from "../lib/core/catalogue.ts";
import type { JobQueue, QueueDepth, QueueRef, ReceiveOptions } from "../lib/core/queue.ts";
import {
  isFinished,
  JobNotFoundError,
  type JobResult,
  RecordTooLargeError,
  type Store,
} from "../lib/core/store.ts";
import { KvJobQueue } from "../lib/storage/embedded/kv_queue.ts";
import type { SqsJobQueue } from "../lib/storage/aws/sqs_queue.ts";
import { backendTest, startTestGateway } from "./support/gateway.ts";
import { skipWithoutAwsEmulators, startAwsEmulators } from "./support/aws_emulators.ts";
import { eventually } from "./support/wait.ts";

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
const DEFAULT: QueueRef = { backend: "vllm", lane: "default" };
const PRIORITY: QueueRef = { backend: "vllm", lane: "priority" };
const LEASE_MS = 60_000;

/**
 * Waits until a queue's counts are `expected`: SQS's are approximate and may
 * lag, where Moto's and the embedded queue's are exact at once.
 */
async function depthBecomes(
  queue: JobQueue,
  of: QueueRef,
  expected: Partial<QueueDepth>,
): Promise<void> {
  let last: QueueDepth | undefined;
  await eventually(async () => {
    last = await queue.depth(of);
    return JSON.stringify(last) === JSON.stringify({ ...last, ...expected });
  }, `${of.backend}'s ${of.lane} queue to hold ${JSON.stringify(expected)}`).catch((err) => {
    throw new Error(`${err.message}; last seen ${JSON.stringify(last)}`);
  });
}

/** A plain text reply, as a job's result. */
function replied(text: string): JobResult {
  return {
    reply: { role: "assistant", content: text },
    finishReason: "stop",
    usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
  };
}

/** Claims a job that must be startable, and returns its record. */
async function started(store: Store, jobId: string): Promise<Job> {
  const claim = await store.startJob(jobId, LEASE_MS);
  assert.equal(claim.state, "started");
  return (claim as { job: Job }).job;
}

/** Follows a job in the background, recording each state, until it ends or is stopped. */
function follow(store: Store, jobId: string) {
  const controller = new AbortController();
  const seen: (Job | undefined)[] = [];
  const done = (async () => {
    for await (const job of store.watchJob(jobId, controller.signal)) {
      seen.push(job);
      if (!job || isFinished(job)) return;
    }
  })();
  return {
    seen,
    done,
    saw: (what: string, test: (job: Job) => boolean) =>
      eventually(() => seen.some((job) => job && test(job)), what, 10_000),
    stop: () => {
      controller.abort();
      return done;
    },
  };
}

backendTest(
  "the store keeps job records and appends each job's exchange exactly once",
  async (t, start) => {
    const gateway = await start();
    const { store } = gateway.services;

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

    await t.step(
      "starting a job marks it running, counts the attempt and holds a lease",
      async () => {
        const job = aJob();
        await store.createJob(job);
        const running = await started(store, job.job_id);
        assert.equal(running.status, "running");
        assert.equal(running.attempts, 1);
        assert.ok((running.lease_until ?? 0) > Date.now());
        assert.equal((await store.getJob(job.job_id))?.status, "running");
      },
    );

    await t.step("a job leased by another run is busy until its lease runs out", async () => {
      const job = aJob();
      await store.createJob(job);
      await started(store, job.job_id);
      const second = await store.startJob(job.job_id, LEASE_MS);
      assert.ok(second.state === "busy" && second.leaseUntil > Date.now(), JSON.stringify(second));

      const short = aJob();
      await store.createJob(short);
      assert.equal((await store.startJob(short.job_id, 1)).state, "started");
      await new Promise((r) => setTimeout(r, 20));
      const takeover = await store.startJob(short.job_id, LEASE_MS);
      assert.equal(takeover.state, "started", "an expired lease is taken over");
      assert.equal(takeover.state === "started" && takeover.job.attempts, 2, "a second attempt");
    });

    await t.step("starting a job that has no record throws JobNotFoundError", async () => {
      await assert.rejects(() => store.startJob("missing", LEASE_MS), JobNotFoundError);
    });

    await t.step(
      "completing appends user then assistant, and a second completion appends nothing",
      async () => {
        const job = aJob("once");
        await store.createJob(job);
        const running = await started(store, job.job_id);
        assert.equal(
          await store.completeJob(running, replied("hi there")),
          "completed",
        );
        assert.equal(
          await store.completeJob(running, replied("again")),
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
        assert.equal(done?.lease_until, undefined, "the lease is released");
        assert.equal(
          (await store.startJob(job.job_id, LEASE_MS)).state,
          "finished",
          "a succeeded job is not run again",
        );
      },
    );

    await t.step(
      "a reply with reasoning keeps its text once, and reads back whole",
      async () => {
        const job = { ...aJob("reasoned"), mode: "stateless" as const };
        await store.createJob(job);
        const answer = "The answer is 42. ".repeat(5_000);
        const reply = { role: "assistant" as const, content: answer, reasoning_content: "Hmm." };
        await store.completeJob(await started(store, job.job_id), { ...replied(""), reply });
        const done = await store.getJob(job.job_id);
        assert.equal(done?.reply, answer);
        assert.equal(done?.reply_message && "content" in done.reply_message, false);
        assert.deepEqual(replyMessage(done?.reply, done?.reply_message), reply);
      },
    );

    await t.step(
      "a reply too long for a DynamoDB item is refused at once as too large; Deno KV keeps it",
      async () => {
        const job = { ...aJob("huge"), mode: "stateless" as const };
        await store.createJob(job);
        const running = await started(store, job.job_id);
        const answer = "x".repeat(420_000);
        if (gateway.backend === "aws") {
          await assert.rejects(
            () => store.completeJob(running, replied(answer)),
            (err: unknown) => err instanceof RecordTooLargeError && /400 KB/.test(err.message),
          );
          assert.equal((await store.getJob(job.job_id))?.status, "running");
        } else {
          assert.equal(await store.completeJob(running, replied(answer)), "completed");
          assert.equal((await store.getJob(job.job_id))?.reply, answer);
        }
      },
    );

    await t.step(
      "concurrent completions of different jobs all land in the conversation",
      async () => {
        const jobs = [aJob("busy"), aJob("busy"), aJob("busy"), aJob("busy")];
        for (const job of jobs) await store.createJob(job);
        await Promise.all(jobs.map(async (job, i) => {
          await store.completeJob(await started(store, job.job_id), replied(`reply ${i}`));
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
      await started(store, job.job_id);
      await store.retryJob(job.job_id, "attempt 1 failed");
      const retried = (await store.getJob(job.job_id))!;
      assert.deepEqual([retried.status, retried.error, retried.lease_until], [
        "queued",
        "attempt 1 failed",
        undefined,
      ]);
      await store.failJob(job.job_id, "gave up");
      const failed = await store.getJob(job.job_id);
      assert.equal(failed?.status, "failed");
      assert.equal(failed?.error, "gave up");
      assert.ok(failed?.finished_at);
      assert.equal(
        (await store.startJob(job.job_id, LEASE_MS)).state,
        "finished",
        "a failed job is not run again",
      );

      const succeeded = aJob();
      await store.createJob(succeeded);
      await store.completeJob(await started(store, succeeded.job_id), replied("ok"));
      await store.failJob(succeeded.job_id, "late failure from a duplicate delivery");
      assert.equal((await store.getJob(succeeded.job_id))?.status, "succeeded");
    });

    await t.step("a conversation's jobs wait in line in the order they were created", async () => {
      const [a, b, c] = [aJob("line"), aJob("line"), aJob("line")];
      assert.deepEqual(await store.createJob(a), { state: "created", first: true });
      assert.deepEqual(await store.createJob(b), { state: "created", first: false });
      assert.deepEqual(await store.createJob(c), { state: "created", first: false });
      assert.equal(await store.headOfLine("line"), a.job_id);
      assert.equal(
        await store.passTurn("line", b.job_id),
        a.job_id,
        "only the head can pass the turn",
      );
      assert.equal(await store.passTurn("line", a.job_id), b.job_id);
      assert.equal(await store.passTurn("line", a.job_id), b.job_id, "passing twice is harmless");
      assert.equal(await store.passTurn("line", b.job_id), c.job_id);
      assert.equal(await store.passTurn("line", c.job_id), undefined);
      assert.deepEqual(
        await store.createJob(aJob("line")),
        { state: "created", first: true },
        "an empty line starts again",
      );
      assert.equal(
        await store.getConversation("line"),
        undefined,
        "a line alone is not a conversation",
      );
    });

    await t.step("a job joins its line once, however often it is lined up", async () => {
      const [a, b] = [aJob("join"), aJob("join")];
      await store.createJob(a);
      await store.createJob(b);
      assert.deepEqual(await store.joinLine(a), { first: true }, "already at the head");
      assert.deepEqual(await store.joinLine(b), { first: false }, "already behind it");
      assert.deepEqual(await store.lineOf("join"), [a.job_id, b.job_id]);
      // What a front door that stopped between writing a job and lining it up leaves.
      await store.passTurn("join", a.job_id);
      await store.passTurn("join", b.job_id);
      assert.deepEqual(await store.joinLine(b), { first: true });
      assert.deepEqual(await store.joinLine(b), { first: true });
      assert.deepEqual(await store.lineOf("join"), [b.job_id]);
    });

    await t.step("a job records that its message was sent, for its generation only", async () => {
      const job = aJob("sent");
      await store.createJob(job);
      assert.equal((await store.getJob(job.job_id))?.sent_at, undefined);
      await store.markSent(job.job_id, 1);
      assert.equal((await store.getJob(job.job_id))?.sent_at, undefined, "a later generation's");
      await store.markSent(job.job_id, 0);
      const sentAt = (await store.getJob(job.job_id))?.sent_at;
      assert.ok(sentAt && Date.parse(sentAt) <= Date.now(), `sent_at ${sentAt}`);
      await store.markSent("no-such-job", 0);
      assert.equal(await store.getJob("no-such-job"), undefined, "marking writes no job");
    });

    await t.step("an idempotency key is held by the first job that claims it", async () => {
      const claim = {
        id: `key-${crypto.randomUUID()}`,
        fingerprint: "request-1",
        expiresAt: Math.floor(Date.now() / 1000) + 60,
        answer: { history_messages: 3 },
      };
      const [first, second] = [aJob("keyed"), aJob("keyed")];
      assert.deepEqual(await store.createJob(first, { idempotency: claim }), {
        state: "created",
        first: true,
      });
      assert.deepEqual(
        await store.createJob(second, { idempotency: { ...claim, fingerprint: "request-2" } }),
        {
          state: "repeated",
          jobId: first.job_id,
          fingerprint: "request-1",
          answer: { history_messages: 3 },
        },
      );
      assert.equal(await store.getJob(second.job_id), undefined, "the repeat wrote no job");
      assert.deepEqual(await store.lineOf("keyed"), [first.job_id], "nor joined the line");
      assert.deepEqual(await store.findIdempotencyKey(claim.id), {
        jobId: first.job_id,
        fingerprint: "request-1",
        answer: { history_messages: 3 },
      });

      await store.releaseIdempotencyKey(claim.id, second.job_id);
      assert.ok(await store.findIdempotencyKey(claim.id), "only its holder frees a key");
      await store.releaseIdempotencyKey(claim.id, first.job_id);
      assert.equal(await store.findIdempotencyKey(claim.id), undefined);
      const third = aJob("keyed");
      assert.equal((await store.createJob(third, { idempotency: claim })).state, "created");
      assert.equal((await store.findIdempotencyKey(claim.id))?.jobId, third.job_id);
    });

    await t.step(
      "an expired idempotency key no longer holds, even before it is deleted",
      async () => {
        const claim = {
          id: `key-${crypto.randomUUID()}`,
          fingerprint: "old",
          expiresAt: Math.floor(Date.now() / 1000) - 1,
        };
        const [old, fresh] = [aJob("expired-key"), aJob("expired-key")];
        await store.createJob(old, { idempotency: claim });
        assert.equal(await store.findIdempotencyKey(claim.id), undefined);
        const renewed = { ...claim, fingerprint: "new", expiresAt: claim.expiresAt + 120 };
        assert.equal((await store.createJob(fresh, { idempotency: renewed })).state, "created");
        assert.equal((await store.findIdempotencyKey(claim.id))?.jobId, fresh.job_id);
      },
    );

    await t.step("workers publish their records, and a new one replaces the old", async () => {
      const record = (id: string, seenAt: number, models: string[]): WorkerRecord => ({
        worker_id: id,
        seen_at: new Date(seenAt).toISOString(),
        live_until: seenAt + 60_000,
        backends: [{
          name: "vllm",
          kind: "vllm",
          status: "up",
          checked_at: new Date(seenAt).toISOString(),
          default_model: models[0],
          models: models.map((id) => ({ id, capabilities: ["completion"] })),
        }],
      });
      const byId = async () =>
        Object.fromEntries((await store.listWorkers()).map((w) => [w.worker_id, w]));
      assert.deepEqual(await store.listWorkers(), [], "no worker yet");
      const a = record("worker-a", Date.now(), ["m1"]);
      await store.saveWorker(a);
      assert.deepEqual(await byId(), { "worker-a": a });
      const b = record("worker-b", Date.now(), ["m2", "m3"]);
      await store.saveWorker(b);
      // A record carries the worker's counters too (lib/core/metrics.ts), kept as they are.
      const a2: WorkerRecord = {
        ...record("worker-a", Date.now() + 1, ["m1", "m4"]),
        counters: {
          started_at: new Date().toISOString(),
          runs: { vllm: { succeeded: 2, failed: 1 } },
          wait_seconds: { vllm: { counts: [1, 0, 2], sum: 0.75, count: 3 } },
          run_seconds: {},
        },
      };
      await store.saveWorker(a2);
      assert.deepEqual(await byId(), { "worker-a": a2, "worker-b": b });
    });

    await t.step("a record not renewed for a day is no longer listed", async () => {
      const old = Date.now() - 25 * 3600_000;
      await store.saveWorker({
        worker_id: "worker-gone",
        seen_at: new Date(old).toISOString(),
        live_until: old + 60_000,
        backends: [],
      });
      const ids = (await store.listWorkers()).map((w) => w.worker_id).sort();
      assert.deepEqual(ids, ["worker-a", "worker-b"]);
    });

    await t.step("the table's other items never read as jobs", async () => {
      const job = aJob("others");
      await store.createJob(job);
      await store.savePartial(job.job_id, { content: "so far" });
      for (const id of [`partial#${job.job_id}`, "line#others", "workers"]) {
        assert.equal(await store.getJob(id), undefined, id);
      }
    });
  },
);

backendTest(
  "watchJob() follows a job: its state now, each change, a streamed reply so far, its end",
  async (t, start) => {
    const { services: { store } } = await start();

    await t.step("an unknown job yields undefined and the follow ends", async () => {
      const follower = follow(store, "no-such-job");
      await follower.done;
      assert.deepEqual(follower.seen, [undefined]);
    });

    await t.step(
      "a streamed job is seen queued, running with its reply so far, then succeeded",
      async () => {
        const job = { ...aJob("watched"), stream: true };
        await store.createJob(job);
        const follower = follow(store, job.job_id);
        try {
          await follower.saw("the queued job", (j) => j.status === "queued");
          assert.deepEqual(follower.seen[0], job, "the record as it was written, nothing more");
          const running = await started(store, job.job_id);
          await follower.saw("the running job", (j) => j.status === "running");
          await store.savePartial(job.job_id, { content: "Hel" });
          await store.savePartial(job.job_id, { content: "Hello" });
          await follower.saw("the reply so far", (j) => j.partial === "Hello");
          await store.completeJob(running, replied("Hello there"));
          await follower.done;
          const last = follower.seen.at(-1);
          assert.equal(last?.status, "succeeded");
          assert.equal(last?.reply, "Hello there");
          const partials = follower.seen.flatMap((j) => j?.partial ? [j.partial] : []);
          assert.deepEqual(
            partials.filter((p, i) => p !== partials[i - 1]),
            partials.includes("Hel") ? ["Hel", "Hello"] : ["Hello"],
            "the reply so far only grows, and a state is never shown twice in a row",
          );
        } finally {
          await follower.stop();
        }
      },
    );

    await t.step("every follower of a job sees its end; a stopped one ends at once", async () => {
      const job = aJob("many");
      await store.createJob(job);
      const followers = [follow(store, job.job_id), follow(store, job.job_id)];
      const leaving = follow(store, job.job_id);
      try {
        for (const f of [...followers, leaving]) await f.saw("the job", () => true);
        await leaving.stop();
        await store.failJob(job.job_id, "given up");
        for (const f of followers) {
          await f.done;
          assert.equal(f.seen.at(-1)?.status, "failed");
        }
        assert.ok(leaving.seen.every((j) => j?.status === "queued"), "the stopped one saw no more");
      } finally {
        await Promise.all([...followers, leaving].map((f) => f.stop()));
      }
    });
  },
);

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
function ownedJob(owner: string | undefined, createdAt: Date, conversationId = "listed") {
  return newJob({
    conversationId,
    route: "vllm",
    model: "m",
    priority: "normal",
    userMessage: userMessage("hello"),
    ttlDays: 1,
    now: createdAt,
    recordFields: owner ? { owner } : undefined,
  });
}

backendTest("the store lists an owner's jobs newest first, a page at a time", async (t, start) => {
  const { services: { store } } = await start();
  const base = Date.now() - 60_000;
  const mine = [0, 1, 2, 3, 4].map((i) => ownedJob("owner-a", new Date(base + i * 1000)));
  const theirs = ownedJob("owner-b", new Date(base + 500));
  const keyless = ownedJob(undefined, new Date(base + 700));
  for (const job of [...mine, theirs, keyless]) await store.createJob(job);
  const newestFirst = mine.map((j) => j.job_id).reverse();

  await t.step("a page holds the newest jobs, and its cursor leads to the rest", async () => {
    let first: Awaited<ReturnType<Store["listJobs"]>> | undefined;
    // DynamoDB's index is eventually consistent: the new jobs show up shortly after.
    await eventually(async () => {
      first = await store.listJobs("owner-a", { limit: 3 });
      return first.jobs.length === 3;
    }, "the jobs to be listed");
    assert.deepEqual(first!.jobs.map((j) => j.job_id), newestFirst.slice(0, 3));
    assert.ok(first!.next, "a cursor to the next page");
    const second = await store.listJobs("owner-a", { limit: 3, after: first!.next });
    assert.deepEqual(second.jobs.map((j) => j.job_id), newestFirst.slice(3));
    assert.equal(second.next, undefined, "the last page has no cursor");
  });

  await t.step(
    "a listing shows a summary: no message, owner or reply",
    () =>
      store.listJobs("owner-a", { limit: 1 }).then(({ jobs: [job] }) => {
        assert.deepEqual(Object.keys(job).sort(), [
          "attempts",
          "conversation_id",
          "created_at",
          "job_id",
          "model",
          "priority",
          "route",
          "status",
          "updated_at",
        ]);
      }),
  );

  await t.step("each owner sees only its own jobs; jobs made without keys are apart", async () => {
    assert.deepEqual((await store.listJobs("owner-b", { limit: 10 })).jobs.map((j) => j.job_id), [
      theirs.job_id,
    ]);
    assert.deepEqual((await store.listJobs(undefined, { limit: 10 })).jobs.map((j) => j.job_id), [
      keyless.job_id,
    ]);
    assert.deepEqual((await store.listJobs("owner-c", { limit: 10 })).jobs, []);
  });

  await t.step("status and since narrow a listing", async () => {
    await started(store, mine[1].job_id);
    await store.failJob(mine[1].job_id, "broken");
    await eventually(
      async () =>
        (await store.listJobs("owner-a", { limit: 10, status: "failed" })).jobs.length === 1,
      "the failed job to be listed as failed",
    );
    const [failed] = (await store.listJobs("owner-a", { limit: 10, status: "failed" })).jobs;
    assert.deepEqual([failed.job_id, failed.error], [mine[1].job_id, "broken"]);
    const recent = await store.listJobs("owner-a", { limit: 10, since: mine[3].created_at });
    assert.deepEqual(recent.jobs.map((j) => j.job_id), newestFirst.slice(0, 2));
  });
});

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
