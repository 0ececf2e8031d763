/**
 * The Store contract, run against every implementation (Deno KV; DynamoDB on
 * DynamoDB Local): job records, each job's exchange appended once, lines,
 * idempotency keys, workers' records, following a job, and listing.
 */
import assert from "node:assert/strict";
import { replyMessage } from "../lib/core/messages.ts";
import type { WorkerRecord } from "../lib/core/catalogue.ts";
import { JobNotFoundError, RecordTooLargeError, type Store } from "../lib/core/store.ts";
import { backendTest } from "./support/gateway.ts";
import { aJob, follow, LEASE_MS, ownedJob, replied, started } from "./support/contract_jobs.ts";
import { eventually } from "./support/wait.ts";

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
