/**
 * At-least-once delivery with an exactly-once effect: duplicates, slow models,
 * crashes, shutdowns, retries and busy conversations never lose or double a message.
 */
import assert from "node:assert/strict";
import { retryDelaySeconds } from "../lib/worker/job_runner.ts";
import { ticketFor } from "../lib/core/jobs.ts";
import { RUN_FLAGS, startDeno, waitUntilUp } from "./support/child_deno.ts";
import { backendTest, type TestGateway } from "./support/gateway.ts";
import { freePort } from "./support/net.ts";
import { within } from "./support/wait.ts";
import { echoAnswer, type RecordedRequest, type StandInAnswer } from "./support/stand_in_llm.ts";

/** A stand-in answer that holds its first request until `release()`, then echoes. */
function holdFirstRequest() {
  const arrived = Promise.withResolvers<void>();
  const released = Promise.withResolvers<void>();
  let calls = 0;
  const echo = echoAnswer("vllm");
  return {
    arrived: arrived.promise,
    release: () => released.resolve(),
    answer: async (request: RecordedRequest): Promise<StandInAnswer> => {
      if (calls++ === 0) {
        arrived.resolve();
        await released.promise;
      }
      return echo(request);
    },
  };
}

backendTest(
  "twenty messages sent at once to one conversation are answered one by one, none lost",
  async (_t, start) => {
    const gateway = await start();
    await gateway.startWorker();
    const texts = Array.from({ length: 20 }, (_, i) => `message ${i}`);
    const jobs = await Promise.all(
      texts.map((text) => gateway.send({ conversation_id: "busy", user_message: text })),
    );
    for (const { job_id } of jobs) {
      assert.equal(
        (await gateway.waitForJob(job_id)).status,
        "succeeded",
      );
    }

    const messages = await gateway.storedMessages("busy");
    assert.equal(messages.length, 40);
    for (let i = 0; i < 40; i += 2) {
      assert.equal(messages[i].role, "user");
      assert.deepEqual(messages[i + 1], {
        role: "assistant",
        content: `vllm says: ${messages[i].content}`,
      });
    }
    assert.deepEqual(
      messages.filter((m) => m.role === "user").map((m) => m.content).sort(),
      [...texts].sort(),
    );
    // No two answers came from the same history: each request saw every exchange before it.
    assert.deepEqual(
      gateway.vllm.requests.map((r) => r.messages.length),
      texts.map((_, i) => 2 * i + 1),
    );
  },
);

backendTest(
  "messages sent back to back are answered in the order they were sent",
  async (_t, start) => {
    const gateway = await start();
    const jobs = [];
    for (let i = 0; i < 5; i++) {
      jobs.push(
        await gateway.send({ conversation_id: "ordered", user_message: `m${i}` }),
      );
    }
    await gateway.startWorker();
    for (const { job_id } of jobs) await gateway.waitForJob(job_id);
    assert.deepEqual(
      (await gateway.storedMessages("ordered")).map((m) => m.content),
      [
        "m0",
        "vllm says: m0",
        "m1",
        "vllm says: m1",
        "m2",
        "vllm says: m2",
        "m3",
        "vllm says: m3",
        "m4",
        "vllm says: m4",
      ],
    );
  },
);

backendTest(
  "a duplicated delivery of a job appends its exchange once and calls the backend once",
  async (_t, start) => {
    const gateway = await start({ env: { VISIBILITY_TIMEOUT_S: "2" } });
    const { job_id } = await gateway.send({ conversation_id: "dup", user_message: "once" });
    const job = (await gateway.services.store.getJob(job_id))!;
    await gateway.services.queue.send("default", ticketFor(job));
    await gateway.startWorker();
    assert.equal((await gateway.waitForJob(job_id)).status, "succeeded");
    await gateway.depthBecomes(
      "default",
      { waiting: 0, in_flight: 0, dead: 0 },
      "the duplicate to be dropped",
    );
    assert.equal(gateway.vllm.requests.length, 1);
    assert.equal((await gateway.storedMessages("dup")).length, 2);
  },
);

backendTest(
  "a job slower than the visibility timeout is kept hidden by the heartbeat and runs once",
  async (_t, start) => {
    const echo = echoAnswer("vllm");
    const gateway = await start({
      env: { VISIBILITY_TIMEOUT_S: "2" },
      vllmAnswer: async (request) => {
        await new Promise((r) => setTimeout(r, 4500));
        return echo(request);
      },
    });
    // Two workers: if the message became visible mid-job, the second would take it.
    await gateway.startWorker();
    await gateway.startWorker();
    const { job_id } = await gateway.send({
      conversation_id: "slow",
      user_message: "take your time",
    });
    assert.equal((await gateway.waitForJob(job_id)).status, "succeeded");
    assert.equal(gateway.vllm.requests.length, 1);
    assert.equal((await gateway.storedMessages("slow")).length, 2);
  },
);

backendTest(
  "stopping the worker lets a short job finish and hands a long one back at once",
  async (t, start) => {
    const held = holdFirstRequest();
    const gateway = await start({ env: { SHUTDOWN_GRACE_MS: "300" }, vllmAnswer: held.answer });
    const worker = await gateway.startWorker();
    const { job_id } = await gateway.send({ conversation_id: "shutdown", user_message: "hello" });
    await within(held.arrived, "the backend to receive the first request");

    await t.step("past the grace period the running job is released, not lost", async () => {
      await worker.stop();
      const job = (await gateway.services.store.getJob(job_id))!;
      assert.equal(job.status, "queued");
      assert.match(job.error ?? "", /Interrupted: the worker stopped/);
      await gateway.depthBecomes("default", { waiting: 1, in_flight: 0, dead: 0 });
    });

    await t.step("another worker then completes it", async () => {
      held.release();
      await gateway.startWorker();
      assert.equal((await gateway.waitForJob(job_id)).status, "succeeded");
      assert.equal((await gateway.storedMessages("shutdown")).length, 2);
    });
  },
);

backendTest("a 4xx the backend will always refuse fails the job at once", async (_t, start) => {
  const gateway = await start({
    env: { MAX_ATTEMPTS: "5" },
    vllmAnswer: () => ({ status: 400, message: "model does not exist" }),
  });
  await gateway.startWorker();
  const { job_id } = await gateway.send({ conversation_id: "bad-model", user_message: "hi" });
  const job = await gateway.waitForJob(job_id);
  assert.equal(job.status, "failed");
  assert.equal(job.attempts, 1);
  assert.equal(job.error, 'Failed for good: Backend "vllm" answered 400');
  assert.equal(gateway.vllm.requests.length, 1);
  await gateway.depthBecomes("default", { waiting: 0, in_flight: 0, dead: 1 });
});

backendTest("429 and 5xx answers are retried until one succeeds", async (_t, start) => {
  let calls = 0;
  const echo = echoAnswer("vllm");
  const gateway = await start({
    env: { MAX_ATTEMPTS: "3" },
    vllmAnswer: (request) =>
      ++calls === 1
        ? { status: 429, message: "slow down" }
        : calls === 2
        ? { status: 503, message: "warming up" }
        : echo(request),
  });
  await gateway.startWorker();
  const { job_id } = await gateway.send({ conversation_id: "flaky", user_message: "hi" });
  const job = await gateway.waitForJob(job_id);
  assert.equal(job.status, "succeeded");
  assert.equal(job.attempts, 3);
  assert.equal(job.error, undefined, "a success clears the last error");
  assert.equal((await gateway.storedMessages("flaky")).length, 2);
});

Deno.test("retryDelaySeconds() doubles with each attempt up to the ceiling", () => {
  assert.deepEqual([1, 2, 3, 4, 5].map((n) => retryDelaySeconds(n, 10, 60)), [10, 20, 40, 60, 60]);
  assert.equal(retryDelaySeconds(3, 0, 900), 0);
});

backendTest("only the most recent HISTORY_MAX_MESSAGES go to the backend", async (_t, start) => {
  const gateway = await start({ env: { HISTORY_MAX_MESSAGES: "2" } });
  await gateway.startWorker();
  for (const text of ["one", "two", "three"]) {
    await gateway.waitForJob(
      (await gateway.send({ conversation_id: "long", user_message: text })).job_id,
    );
  }
  assert.deepEqual(gateway.vllm.requests[2].messages.map((m) => m.content), [
    "two",
    "vllm says: two",
    "three",
  ]);
  assert.equal((await gateway.storedMessages("long")).length, 6, "the store keeps everything");
});

backendTest(
  "a reply that would outgrow the store fails its job with a clear reason",
  async (_t, start) => {
    const gateway = await start({ vllmAnswer: () => ({ reply: "x".repeat(400_000) }) });
    await gateway.startWorker();
    const { job_id } = await gateway.send({
      conversation_id: "huge",
      user_message: "write a novel",
    });
    const job = await gateway.waitForJob(job_id);
    assert.equal(job.status, "failed");
    assert.match(
      job.error ?? "",
      /Cannot store the reply: conversation "huge" would grow to \d+ bytes/,
    );
    assert.equal(
      await gateway.services.store.getConversation("huge"),
      undefined,
      "nothing half-written",
    );
  },
);

/**
 * The worker as a real child process on the gateway's storage: `worker.ts` for
 * AWS, `main.ts` (which runs the worker in-process) for the embedded backend.
 */
async function startWorkerProcess(gateway: TestGateway, env: Record<string, string> = {}) {
  if (gateway.backend === "aws") {
    return startDeno(["run", ...RUN_FLAGS, "worker.ts"], { env: { ...gateway.env, ...env } });
  }
  const port = String(freePort());
  const child = startDeno(["run", ...RUN_FLAGS, "main.ts"], {
    env: { ...gateway.env, ...env, PORT: port },
  });
  await waitUntilUp(`http://127.0.0.1:${port}/healthz`, child);
  return child;
}

backendTest(
  "a worker killed with SIGKILL mid-job loses nothing: the job runs again, once",
  async (_t, start) => {
    const held = holdFirstRequest();
    const gateway = await start({ vllmAnswer: held.answer, env: { VISIBILITY_TIMEOUT_S: "2" } });
    try {
      const doomed = await startWorkerProcess(gateway);
      const { job_id } = await gateway.send({
        conversation_id: "crash",
        user_message: "survive this",
      });
      await within(held.arrived, "the backend to receive the first request");
      doomed.kill("SIGKILL");
      await doomed.exited;

      const successor = await startWorkerProcess(gateway);
      try {
        assert.equal((await gateway.waitForJob(job_id)).status, "succeeded");
      } catch (err) {
        successor.kill("SIGTERM");
        const [before, after] = [await doomed.exited, await successor.exited];
        const logs = `killed worker:\n${before.output}\nsuccessor:\n${after.output}`;
        throw new Error(`${(err as Error).message}\n${logs}`);
      } finally {
        successor.kill("SIGTERM");
        await successor.exited;
      }
      assert.deepEqual(await gateway.storedMessages("crash"), [
        { role: "user", content: "survive this" },
        { role: "assistant", content: "vllm says: survive this" },
      ]);
      assert.equal(gateway.vllm.requests.length, 2, "the killed attempt and the one that finished");
    } finally {
      held.release();
    }
  },
);

backendTest(
  "SIGTERM lets the running job finish within the grace period, then exits 0",
  async (_t, start) => {
    const held = holdFirstRequest();
    const gateway = await start({ vllmAnswer: held.answer });
    try {
      const worker = await startWorkerProcess(gateway, { SHUTDOWN_GRACE_MS: "20000" });
      const { job_id } = await gateway.send({
        conversation_id: "term",
        user_message: "finish me",
      });
      await within(held.arrived, "the backend to receive the first request");
      worker.kill("SIGTERM");
      setTimeout(held.release, 500);
      const { code, output } = await worker.exited;
      assert.equal(code, 0, output);
      assert.match(output, /Waiting for running jobs/);
      // The process closes its clients only once the job is settled.
      const succeeded = output.indexOf('"Job succeeded"');
      const stopped = output.search(/"(Worker|Gateway) stopped"/);
      assert.ok(
        succeeded >= 0 && succeeded < stopped,
        `the job finished before the process stopped:\n${output}`,
      );
      assert.equal((await gateway.services.store.getJob(job_id))?.status, "succeeded");
      assert.equal(gateway.vllm.requests.length, 1);
    } finally {
      held.release();
    }
  },
);
