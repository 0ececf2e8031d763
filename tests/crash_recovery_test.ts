/**
 * Whatever is killed when, every job that got a 202 ends succeeded or failed
 * with a reason: a worker stopped mid long poll, a front door killed between
 * writing a job and enqueuing it, a message the queue dead-letters by itself.
 */
import assert from "node:assert/strict";
import { newJob } from "../lib/core/jobs.ts";
import { userMessage } from "../lib/core/messages.ts";
import { RUN_FLAGS, startDeno, waitUntilUp } from "./support/child_deno.ts";
import { backendTest } from "./support/gateway.ts";
import { freePort } from "./support/net.ts";
import { ObservedQueue } from "./support/queue_wrappers.ts";
import { eventually, within } from "./support/wait.ts";

backendTest(
  "a worker stopped while idle puts back what its last long poll brings, and the next runs it at once",
  async (_t, start) => {
    // A message hidden by a lost receive would wait out this visibility timeout.
    // The job is sent just after the long poll starts, well within its 5 s even
    // on a busy machine (stopping waits out the other lane's empty poll).
    const gateway = await start({ env: { POLL_WAIT_S: "5", VISIBILITY_TIMEOUT_S: "300" } });
    const observed = new ObservedQueue(gateway.services.queue);
    const idle = await gateway.startWorker({ queue: observed });
    await eventually(
      () => observed.receives.some((r) => r.waitSeconds > 0),
      "the idle worker's long poll",
    );

    const stopping = idle.stop();
    const jobId =
      (await gateway.send({ conversation_id: "restart", user_message: "still there?" })).job_id;
    await within(stopping, "the idle worker to stop");
    if (gateway.backend === "aws") {
      // SQS cannot recall a receive in flight, so the stopping worker's poll took the job.
      assert.ok(
        observed.receives.some((r) => r.jobIds?.includes(jobId)),
        "the stopped worker's last long poll received the job",
      );
    }

    await gateway.startWorker();
    // Far less than the 300 s a message lost to the stopped worker would stay hidden.
    const job = await gateway.waitForJob(jobId, 60_000);
    assert.equal(job.status, "succeeded");
    assert.equal(job.attempts, 1, "a delivery put back unrun is not an attempt");
  },
);

backendTest(
  "a job written at the head of its line but never enqueued is sent again by the next message's line check",
  async (_t, start) => {
    const gateway = await start({ env: { LINE_CHECK_S: "1" } });
    await gateway.startWorker();
    // What a front door that died between writing a job and enqueuing it leaves behind.
    const stranded = newJob({
      conversationId: "stranded",
      route: "vllm",
      model: "test-text-model",
      priority: "normal",
      userMessage: userMessage("lost in the crash"),
      ttlDays: 1,
    });
    assert.deepEqual(await gateway.services.store.createJob(stranded), {
      state: "created",
      first: true,
    });

    const next =
      (await gateway.send({ conversation_id: "stranded", user_message: "after it" })).job_id;
    assert.equal((await gateway.waitForJob(stranded.job_id)).status, "succeeded");
    assert.equal((await gateway.waitForJob(next)).status, "succeeded");
    assert.deepEqual((await gateway.storedMessages("stranded")).map((m) => m.content), [
      "lost in the crash",
      "vllm says: lost in the crash",
      "after it",
      "vllm says: after it",
    ]);
  },
);

backendTest(
  "a job whose message the queue dead-letters by itself is failed with its reason, and its conversation goes on on another backend",
  async (_t, start) => {
    const gateway = await start({
      env: { MAX_ATTEMPTS: "1", VISIBILITY_TIMEOUT_S: "2", DEAD_LETTER_SWEEP_S: "1" },
    });
    // The first message has an image, so it is Ollama's; the next is text, so vLLM's.
    const first = (await gateway.send({
      conversation_id: "dlq",
      user_message: "doomed",
      images: [{ image_url: "https://images.example/cat.png" }],
    })).job_id;
    const second = (await gateway.send({ conversation_id: "dlq", user_message: "next" })).job_id;
    // A worker takes the only permitted delivery of the first job and dies with it.
    const [taken] = await gateway.services.queue.receive({ backend: "ollama", lane: "default" }, {
      maxMessages: 1,
      waitSeconds: 0,
      visibilitySeconds: 1,
    });
    assert.equal(taken.ticket.job_id, first);

    await gateway.startWorker();
    const failed = await gateway.waitForJob(first);
    assert.equal(failed.status, "failed");
    assert.match(failed.error ?? "", /delivered 1 times without finishing/);
    assert.match(failed.error ?? "", /backend "ollama"'s default dead-letter queue/);
    assert.equal((await gateway.waitForJob(second)).status, "succeeded");
    assert.deepEqual((await gateway.storedMessages("dlq")).map((m) => m.content), [
      "next",
      "vllm says: next",
    ]);
  },
);

backendTest(
  "a front door killed with SIGKILL mid-burst loses nothing: retries with the same Idempotency-Key make each message once",
  async (t, start) => {
    const gateway = await start({
      env: { LINE_CHECK_S: "1", VISIBILITY_TIMEOUT_S: "5", MAX_ATTEMPTS: "3" },
    });
    const port = String(freePort());
    const base = `http://127.0.0.1:${port}`;
    // With the embedded backend the front door runs the worker; on AWS the worker runs here.
    const frontDoor = async () => {
      const child = startDeno(["run", ...RUN_FLAGS, "main.ts"], {
        env: { ...gateway.env, PORT: port },
      });
      await waitUntilUp(`${base}/healthz`, child);
      return child;
    };
    if (gateway.backend === "aws") await gateway.startWorker();

    const messages = Array.from({ length: 120 }, (_, i) => ({
      conversation: `burst-${i % 12}`,
      text: `message ${Math.floor(i / 12)}`,
      key: crypto.randomUUID(),
    }));
    /** Each message's job, once a front door answered 202 for it. */
    const accepted = new Map<string, string>();
    const post = async (message: (typeof messages)[number]) => {
      const res = await fetch(`${base}/chat`, {
        method: "POST",
        headers: { "content-type": "application/json", "idempotency-key": message.key },
        body: JSON.stringify({ conversation_id: message.conversation, user_message: message.text }),
      });
      const body = await res.json();
      if (res.status !== 202) throw new Error(`POST /chat answered ${res.status}`);
      const before = accepted.get(message.key);
      assert.ok(before === undefined || before === body.job_id, "a repeat names the same job");
      accepted.set(message.key, body.job_id);
    };

    await t.step("a burst of messages to busy conversations is cut off by SIGKILL", async () => {
      const doomed = await frontDoor();
      let next = 0;
      let killed = false;
      const sender = async () => {
        while (next < messages.length && !killed) {
          // The front door may die with this request in flight: no 202, and maybe a job.
          await post(messages[next++]).catch(() => {});
          if (accepted.size >= 40 && !killed) {
            killed = true;
            doomed.kill("SIGKILL");
          }
        }
      };
      await Promise.all(Array.from({ length: 8 }, sender));
      await doomed.exited;
      assert.ok(killed, "the front door was killed mid-burst");
      assert.ok(accepted.size < messages.length, "some messages got no 202");
    });

    await t.step(
      "after a restart the client sends again, with the same keys, what got no 202",
      async () => {
        const restarted = await frontDoor();
        try {
          // In order per conversation, as a client that retries before it goes on would.
          for (const message of messages) await post(message);
          const jobIds = [...accepted.values()];
          assert.equal(new Set(jobIds).size, messages.length, "one job per message");
          for (const jobId of jobIds) {
            const job = await gateway.waitForJob(jobId, 90_000);
            assert.equal(job.status, "succeeded", JSON.stringify(job));
          }
          const jobs = await gateway.jobRecords();
          assert.equal(jobs.length, messages.length, "no second job for any message");
          for (const conversation of new Set(messages.map((m) => m.conversation))) {
            const texts = (await gateway.storedMessages(conversation)).map((m) => m.content);
            const asked = texts.filter((_, i) => i % 2 === 0);
            const mine = messages.filter((m) => m.conversation === conversation).map((m) => m.text);
            assert.deepEqual(
              [...asked].sort(),
              [...mine].sort(),
              `each message once in ${conversation}`,
            );
          }
        } finally {
          restarted.kill("SIGTERM");
          await restarted.exited;
        }
      },
    );
  },
);
