/**
 * Failed jobs go back to run, one by id or every dead letter at once, as a
 * new attempt of the same job: never appended twice, never out of order in
 * their conversation, never left with nothing to run them; and only for an
 * admin key.
 */
import assert from "node:assert/strict";
import { ticketFor } from "../lib/core/jobs.ts";
import { backendTest, type TestGateway, type TestGatewayFactory } from "./support/gateway.ts";
import type { RecordedRequest, StandInAnswer } from "./support/stand_in_llm.ts";
import { startDeno } from "./support/child_deno.ts";
import { eventually } from "./support/wait.ts";

const USER_KEY = "user-key";
const ADMIN_KEY = "admin-key";

/** A backend that refuses, for good, every message containing "doomed" while `broken` is set. */
function breakableBackend(name = "vllm") {
  const backend = {
    broken: true,
    /** Milliseconds each answer takes. */
    delayMs: 0,
    answer: async (request: RecordedRequest): Promise<StandInAnswer> => {
      const last = request.messages.at(-1);
      const text = typeof last?.content === "string" ? last.content : "";
      await new Promise((r) => setTimeout(r, backend.delayMs));
      return backend.broken && text.includes("doomed")
        ? { status: 400, message: "model not loaded" }
        : { reply: `${name} says: ${text}` };
    },
  };
  return backend;
}

async function startGateway(start: TestGatewayFactory, env: Record<string, string> = {}) {
  const backend = breakableBackend();
  const ollama = breakableBackend("ollama");
  const gateway = await start({
    env: { GATEWAY_API_KEYS: USER_KEY, GATEWAY_ADMIN_KEYS: ADMIN_KEY, ...env },
    vllmAnswer: backend.answer,
    ollamaAnswer: ollama.answer,
  });
  return { gateway, backend, ollama };
}

/** Calls the gateway in-process with a key. */
async function call(
  gateway: TestGateway,
  path: string,
  options: { key?: string; body?: unknown } = {},
): Promise<{ status: number; body: Record<string, unknown> & { error?: Record<string, string> } }> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (options.key) headers.authorization = `Bearer ${options.key}`;
  const res = await gateway.app.request(path, {
    method: options.body === undefined ? "GET" : "POST",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  return { status: res.status, body: await res.json() };
}

/** Sends a chat as the user key (to the first backend, or the one serving `model`) and returns its job id. */
async function chat(
  gateway: TestGateway,
  conversationId: string,
  text: string,
  model?: string,
): Promise<string> {
  const { status, body } = await call(gateway, "/chat", {
    key: USER_KEY,
    body: { conversation_id: conversationId, user_message: text, model },
  });
  assert.equal(status, 202, JSON.stringify(body));
  return body.job_id as string;
}

function retry(gateway: TestGateway, body: unknown, key = ADMIN_KEY) {
  return call(gateway, "/admin/dead-letters/retry", { key, body });
}

/** The stored conversation of the user key, as its texts. */
async function texts(gateway: TestGateway, conversationId: string): Promise<string[]> {
  const { status, body } = await call(
    gateway,
    `/conversation?conversation_id=${conversationId}`,
    { key: USER_KEY },
  );
  if (status === 404) return [];
  return (body.messages as { content: string }[]).map((m) => m.content);
}

backendTest("only an admin key may retry or redrive dead letters", async (t, start) => {
  await t.step("without GATEWAY_ADMIN_KEYS nobody may", async () => {
    const gateway = await start({ env: { GATEWAY_API_KEYS: USER_KEY } });
    const { status, body } = await retry(gateway, { all: true }, USER_KEY);
    assert.equal(status, 403);
    assert.equal(body.error?.code, "no_admin_keys");
    assert.match(body.error?.message ?? "", /GATEWAY_ADMIN_KEYS/);
  });

  const { gateway } = await startGateway(start);
  await t.step("an API key that is not an admin key gets 403", async () => {
    const { status, body } = await retry(gateway, { all: true }, USER_KEY);
    assert.equal(status, 403);
    assert.equal(body.error?.code, "not_admin");
  });

  await t.step("no key gets 401; the admin key is an API key too", async () => {
    assert.equal((await retry(gateway, { all: true }, "")).status, 401);
    assert.equal((await call(gateway, "/v1/models", { key: ADMIN_KEY })).status, 200);
  });

  await t.step("a body that asks for neither or both gets a 400 naming the field", async () => {
    const neither = await retry(gateway, {});
    assert.equal(neither.status, 400);
    assert.equal(neither.body.error?.param, "job_id");
    const both = await retry(gateway, { job_id: "x", all: true });
    assert.equal(both.status, 400);
    assert.equal(both.body.error?.param, "all");
    // Only a job id reaches the store: the table's other items are never read as jobs.
    const notAnId = await retry(gateway, { job_id: "workers" });
    assert.equal(notAnId.status, 400);
    assert.equal(notAnId.body.error?.param, "job_id");
    const unknown = await retry(gateway, { job_id: crypto.randomUUID() });
    assert.equal(unknown.status, 404);
  });

  await t.step("the body must be declared as JSON, as on every POST", async () => {
    const res = await gateway.app.request("/admin/dead-letters/retry", {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "text/plain" },
      body: JSON.stringify({ all: true }),
    });
    assert.equal(res.status, 415);
  });
});

backendTest(
  "a failed job retried by id runs again as the same job and is appended once, its messages unshown",
  async (t, start) => {
    const { gateway, backend } = await startGateway(start, { DEAD_LETTER_SWEEP_S: "1" });
    await gateway.startWorker();
    const jobId = await chat(gateway, "retry-one", "doomed at first");
    const failed = await gateway.waitForJob(jobId);
    assert.equal(failed.status, "failed");
    // The backend's own words go to the log only (issue 12); the record names the backend.
    assert.match(failed.error ?? "", /Backend "vllm" answered 400/);
    await gateway.depthBecomes("default", { waiting: 0, in_flight: 0, dead: 1 });

    await t.step("the retry sends it back to run, and it succeeds", async () => {
      backend.broken = false;
      // Slow enough that the dead-letter sweep comes round while it runs.
      backend.delayMs = 2500;
      const { status, body } = await retry(gateway, { job_id: jobId });
      assert.equal(status, 200, JSON.stringify(body));
      assert.equal(body.retry, "sent");
      // The job is the user key's: the admin sees its ids and status, never its messages.
      assert.deepEqual(body.job, { job_id: jobId, status: "queued" });
      assert.equal((await gateway.services.store.getJob(jobId))?.retries, 1);
      const done = await gateway.waitForJob(jobId);
      assert.equal(done.status, "succeeded", done.error);
      assert.equal(done.attempts, 1);
      assert.deepEqual(await texts(gateway, "retry-one"), [
        "doomed at first",
        "vllm says: doomed at first",
      ]);
    });

    await t.step("its old dead letter is left alone by the sweep", async () => {
      // The job's first message is still in the dead-letter queue, of the generation before.
      await gateway.depthBecomes("default", { waiting: 0, in_flight: 0, dead: 1 });
      assert.equal((await gateway.services.store.getJob(jobId))?.status, "succeeded");
    });

    await t.step("a job that did not fail cannot be retried", async () => {
      const { status, body } = await retry(gateway, { job_id: jobId });
      assert.equal(status, 409);
      assert.equal(body.error?.code, "not_failed");
      assert.match(body.error?.message ?? "", /it is succeeded/);
    });

    await t.step("redriving that old dead letter runs nothing twice", async () => {
      assert.equal((await retry(gateway, { all: true })).status, 202);
      await gateway.depthBecomes("default", { waiting: 0, in_flight: 0, dead: 0 });
      assert.deepEqual(await texts(gateway, "retry-one"), [
        "doomed at first",
        "vllm says: doomed at first",
      ]);
    });
  },
);

backendTest(
  "a retry never answers out of order: refused once its conversation moved on, first in line before later unstarted messages",
  async (t, start) => {
    const { gateway, backend } = await startGateway(start);
    let worker = await gateway.startWorker();

    await t.step("a conversation answered past the failed job refuses its retry", async () => {
      const doomed = await chat(gateway, "moved-on", "doomed one");
      assert.equal((await gateway.waitForJob(doomed)).status, "failed");
      const next = await chat(gateway, "moved-on", "and then");
      assert.equal((await gateway.waitForJob(next)).status, "succeeded");
      backend.broken = false;
      const { status, body } = await retry(gateway, { job_id: doomed });
      assert.equal(status, 409);
      assert.equal(body.error?.code, "conversation_moved_on");
      assert.match(body.error?.message ?? "", /send the message again/);
      assert.equal((await gateway.services.store.getJob(doomed))?.status, "failed");
      assert.deepEqual(await texts(gateway, "moved-on"), ["and then", "vllm says: and then"]);
      backend.broken = true;
    });

    await t.step("a retried job goes before a later message that has not started", async () => {
      const doomed = await chat(gateway, "in-order", "doomed first");
      assert.equal((await gateway.waitForJob(doomed)).status, "failed");
      // With no worker running, the next message waits on the queue, unstarted.
      await worker.stop();
      const later = await chat(gateway, "in-order", "second");
      backend.broken = false;
      const { status, body } = await retry(gateway, { job_id: doomed });
      assert.equal(status, 200, JSON.stringify(body));
      assert.equal(body.retry, "sent");
      worker = await gateway.startWorker();
      assert.equal((await gateway.waitForJob(doomed)).status, "succeeded");
      const second = await gateway.waitForJob(later);
      assert.equal(second.status, "succeeded");
      assert.equal(second.attempts, 1, "its out-of-date message started nothing");
      assert.deepEqual(await texts(gateway, "in-order"), [
        "doomed first",
        "vllm says: doomed first",
        "second",
        "vllm says: second",
      ]);
    });
  },
);

backendTest(
  "a redrive runs every backend's dead letters' jobs again, refuses those whose conversation moved on, and drops late duplicates",
  async (t, start) => {
    const { gateway, backend, ollama } = await startGateway(start);
    await gateway.startWorker();
    const { store, queue } = gateway.services;
    const VLLM = { backend: "vllm", lane: "default" } as const;
    const first = await chat(gateway, "redrive-a", "doomed a");
    const second = await chat(gateway, "redrive-b", "doomed b");
    const movedOn = await chat(gateway, "redrive-c", "doomed c");
    const onOllama = await chat(gateway, "redrive-e", "doomed e", "test-vision-model");
    for (const id of [first, second, movedOn, onOllama]) {
      assert.equal((await gateway.waitForJob(id)).status, "failed");
    }
    const answered = await chat(gateway, "redrive-c", "answered c");
    assert.equal((await gateway.waitForJob(answered)).status, "succeeded");
    await gateway.depthBecomes(VLLM, { waiting: 0, in_flight: 0, dead: 3 });
    await gateway.depthBecomes("default", { waiting: 0, in_flight: 0, dead: 4 });
    backend.broken = false;
    ollama.broken = false;

    await t.step(
      "retry all moves every backend's dead letters back and the worker retries each",
      async () => {
        const { status, body } = await retry(gateway, { all: true });
        assert.equal(status, 202, JSON.stringify(body));
        type Moved = { method: string; moved: number };
        const report = body.redrive as { backends: Record<string, Record<string, Moved>> };
        assert.deepEqual(Object.keys(report.backends).sort(), ["ollama", "vllm"]);
        assert.equal(report.backends.vllm.default.moved, 3);
        assert.equal(report.backends.ollama.default.moved, 1);
        assert.equal(report.backends.vllm.priority.moved, 0);
        assert.equal(
          report.backends.vllm.default.method,
          gateway.backend === "aws" ? "copy" : "dead_lane",
        );
        // The worker retries each job as its message comes back.
        for (const id of [first, second, onOllama]) {
          await eventually(
            async () => (await store.getJob(id))?.status === "succeeded",
            `job ${id} to succeed on its retry`,
          ).catch((err) => {
            throw new Error(`${err.message}${gateway.recentLogs()}`);
          });
          const job = await store.getJob(id);
          assert.deepEqual([job?.attempts, job?.retries], [1, 1]);
        }
        assert.deepEqual(await texts(gateway, "redrive-a"), ["doomed a", "vllm says: doomed a"]);
        assert.deepEqual(await texts(gateway, "redrive-b"), ["doomed b", "vllm says: doomed b"]);
        assert.deepEqual(await texts(gateway, "redrive-e"), ["doomed e", "ollama says: doomed e"]);
      },
    );

    await t.step(
      "a job whose conversation moved on stays failed, its message dead again",
      async () => {
        await gateway.depthBecomes("default", { waiting: 0, in_flight: 0, dead: 1 });
        assert.equal((await store.getJob(movedOn))?.status, "failed");
        assert.deepEqual(await texts(gateway, "redrive-c"), [
          "answered c",
          "vllm says: answered c",
        ]);
      },
    );

    await t.step("a duplicate of a job that failed after the redrive is dropped", async () => {
      backend.broken = true;
      const late = await chat(gateway, "redrive-d", "doomed late");
      const job = await gateway.waitForJob(late);
      assert.equal(job.status, "failed");
      await gateway.depthBecomes("default", { waiting: 0, in_flight: 0, dead: 2 });
      backend.broken = false;
      await queue.send("default", ticketFor(job));
      await gateway.depthBecomes("default", { waiting: 0, in_flight: 0, dead: 2 });
      await eventually(
        async () => (await gateway.depth("default")).waiting === 0,
        "the duplicate to be taken",
      );
      const after = await store.getJob(late);
      assert.deepEqual([after?.status, after?.attempts, after?.retries], ["failed", 1, undefined]);
      assert.deepEqual(await texts(gateway, "redrive-d"), []);
    });
  },
);

backendTest(
  "deno task redrive moves the dead letters back, and the worker runs their jobs again",
  async (_t, start) => {
    const { gateway, backend } = await startGateway(start);
    await gateway.startWorker();
    const jobId = await chat(gateway, "by-task", "doomed by the task");
    assert.equal((await gateway.waitForJob(jobId)).status, "failed");
    await gateway.depthBecomes("default", { waiting: 0, in_flight: 0, dead: 1 });
    backend.broken = false;

    const env = Object.fromEntries(
      Object.entries(gateway.env).filter(([name]) => !name.startsWith("GATEWAY_")),
    );
    const { code, output } = await startDeno(["task", "redrive"], { env }).exited;
    assert.equal(code, 0, output);
    assert.match(output, /Dead letters moved back/);
    assert.match(output, gateway.backend === "aws" ? /"method":"copy"/ : /"method":"dead_lane"/);
    assert.doesNotMatch(output, /AWS_SECRET|"test"/, "no credentials in the log");
    await eventually(
      async () => (await gateway.services.store.getJob(jobId))?.status === "succeeded",
      "the redriven job to succeed",
    );
    assert.deepEqual(await texts(gateway, "by-task"), [
      "doomed by the task",
      "vllm says: doomed by the task",
    ]);
  },
);
