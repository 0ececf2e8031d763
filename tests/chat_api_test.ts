import assert from "node:assert/strict";
import { createApp } from "../lib/http/app.ts";
import type { ErrorBody } from "../lib/http/errors.ts";
import type { Job } from "../lib/core/jobs.ts";
import { silentLogger } from "../lib/core/log.ts";
import { LANES } from "../lib/core/queue.ts";
import { backendTest, type TestGateway } from "./support/gateway.ts";

/**
 * Nothing was sent and nothing stored. Moto's and the embedded queue's counts
 * are exact at once; on AWS they lag a send by up to a minute, so there the
 * empty list of job records (a store read, consistent) is what shows it.
 */
async function nothingQueued(gateway: TestGateway) {
  for (const lane of LANES) {
    assert.deepEqual(
      await gateway.depth(lane),
      { waiting: 0, in_flight: 0, dead: 0 },
      `the ${lane} queue is empty`,
    );
  }
  assert.deepEqual(await gateway.jobRecords(), [], "no job record was written");
}

const badBodies: { name: string; body: unknown; param: string; pattern: RegExp }[] = [
  {
    name: "malformed JSON",
    body: '{"conversation_id": "a",',
    param: "body",
    pattern: /Invalid JSON body/,
  },
  { name: "a JSON array", body: [], param: "body", pattern: /must be a JSON object/ },
  {
    name: "a missing conversation_id",
    body: { user_message: "hi" },
    param: "conversation_id",
    pattern: /is required/,
  },
  {
    name: "a conversation_id that is a number",
    body: { conversation_id: 7, user_message: "hi" },
    param: "conversation_id",
    pattern: /must be a string/,
  },
  {
    name: "a missing user_message",
    body: { conversation_id: "a" },
    param: "user_message",
    pattern: /is required/,
  },
  {
    name: "a user_message that is not a string",
    body: { conversation_id: "a", user_message: ["hi"] },
    param: "user_message",
    pattern: /must be a string/,
  },
  {
    name: "an empty user_message",
    body: { conversation_id: "a", user_message: "  \n " },
    param: "user_message",
    pattern: /must not be empty/,
  },
  {
    name: "an unknown priority",
    body: { conversation_id: "a", user_message: "hi", priority: "urgent" },
    param: "priority",
    pattern: /must be "high" or "normal"/,
  },
  {
    name: "an image entry without a string image_url",
    body: { conversation_id: "a", user_message: "hi", images: [{ image_url: 42 }] },
    param: "images[0].image_url",
    pattern: /must be a string/,
  },
  {
    name: "more images than one message may carry",
    body: {
      conversation_id: "a",
      user_message: "hi",
      images: Array.from({ length: 9 }, (_, i) => ({ image_url: `https://example.com/${i}.png` })),
    },
    param: "images",
    pattern: /must hold at most 8 images/,
  },
  {
    name: "images that is not an array",
    body: { conversation_id: "a", user_message: "hi", images: "https://example.com/a.png" },
    param: "images",
    pattern: /must be an array/,
  },
];

backendTest(
  "the front door answers each route in OpenAI's error shape and enqueues only valid jobs",
  async (t, start) => {
    const gateway = await start();
    await t.step(
      "GET /healthz answers 200 with the queues' depths and the worker's state",
      async () => {
        const res = await gateway.app.request("/healthz");
        assert.equal(res.status, 200);
        const empty = { waiting: 0, in_flight: 0, dead: 0 };
        const noWorker = {
          status: "no_worker",
          last_seen: null,
          seconds_ago: null,
          stale: false,
          queues: { priority: empty, default: empty },
          workers: [],
          models: [],
        };
        assert.deepEqual(await res.json(), {
          status: "ok",
          backend: gateway.backend,
          queues: { priority: empty, default: empty },
          worker: { last_seen: null, seconds_ago: null, stale: false },
          backends: { vllm: noWorker, ollama: noWorker },
        });
      },
    );

    for (const bad of badBodies) {
      await t.step(
        `POST /chat with ${bad.name} gets a 400 naming ${bad.param} and enqueues nothing`,
        async () => {
          const res = await gateway.postChat(bad.body);
          assert.equal(res.status, 400);
          const { error } = await res.json() as ErrorBody;
          assert.equal(error.type, "invalid_request_error");
          assert.equal(error.param, bad.param);
          assert.match(error.message, bad.pattern);
          assert.ok(
            error.message.includes(bad.param),
            `message names the field: ${error.message}`,
          );
          await nothingQueued(gateway);
        },
      );
    }

    await t.step("a 400 lists every problem of the body at once", async () => {
      const res = await gateway.postChat({
        conversation_id: "",
        user_message: 1,
        priority: "now",
      });
      assert.equal(res.status, 400);
      const { error } = await res.json() as ErrorBody;
      assert.deepEqual(error.details?.map((d) => d.param), [
        "conversation_id",
        "user_message",
        "priority",
      ]);
      await nothingQueued(gateway);
    });

    await t.step(
      "GET /conversation without conversation_id is a 400, and an unknown one a 404",
      async () => {
        const missing = await gateway.app.request("/conversation");
        assert.equal(missing.status, 400);
        assert.equal((await missing.json() as ErrorBody).error.param, "conversation_id");
        const unknown = await gateway.app.request("/conversation?conversation_id=nobody");
        assert.equal(unknown.status, 404);
        assert.equal((await unknown.json() as ErrorBody).error.type, "not_found_error");
      },
    );

    await t.step("an unknown job and an unknown route are JSON 404s", async () => {
      const job = await gateway.app.request("/jobs/no-such-job");
      assert.equal(job.status, 404);
      assert.match((await job.json() as ErrorBody).error.message, /Job not found/);
      const route = await gateway.app.request("/nope", { method: "DELETE" });
      assert.equal(route.status, 404);
      assert.match((await route.json() as ErrorBody).error.message, /no route for DELETE \/nope/);
    });

    await t.step(
      "POST /chat answers 202, writes a queued job and puts it on the priority queue",
      async () => {
        const res = await gateway.postChat({
          conversation_id: "abc-123",
          user_message: "Hi",
          priority: "high",
        });
        assert.equal(res.status, 202);
        const body = await res.json();
        assert.equal(typeof body.job_id, "string");
        assert.deepEqual({ ...body, job_id: "?" }, {
          job_id: "?",
          conversation_id: "abc-123",
          status: "queued",
          route: "vllm",
          model: "test-text-model",
          priority: "high",
          history_messages: 0,
          waiting_behind: false,
        });
        await gateway.depthBecomes("priority", { waiting: 1, in_flight: 0, dead: 0 });
        await gateway.depthBecomes("default", { waiting: 0, in_flight: 0, dead: 0 });

        const jobRes = await gateway.app.request(`/jobs/${body.job_id}`);
        assert.equal(jobRes.status, 200);
        const job = await jobRes.json() as Job;
        assert.equal(job.status, "queued");
        assert.deepEqual(job.user_message, { role: "user", content: "Hi" });
        assert.ok(
          job.expires_at > Date.now() / 1000 + 6 * 86_400,
          "the record carries a TTL a week out",
        );
      },
    );

    await t.step("a normal message goes to the default queue", async () => {
      const res = await gateway.postChat({ conversation_id: "other", user_message: "Hello" });
      assert.equal(res.status, 202);
      assert.equal((await res.json()).priority, "normal");
      await gateway.depthBecomes("default", { waiting: 1, in_flight: 0, dead: 0 });
    });

    await t.step(
      "a second message to a busy conversation waits in line, off the queue",
      async () => {
        const res = await gateway.postChat({
          conversation_id: "abc-123",
          user_message: "Hello again",
        });
        assert.equal(res.status, 202);
        const body = await res.json();
        assert.equal(body.waiting_behind, true);
        assert.equal(body.status, "queued");
        // Only the other conversation's job is queued: this one waits for its turn, and the
        // queue holds the head's message, so no line check is needed either.
        await gateway.depthBecomes("default", { waiting: 1, in_flight: 0, dead: 0 });
        await gateway.depthBecomes("priority", { waiting: 1, in_flight: 0, dead: 0 });
      },
    );
  },
);

backendTest(
  "a job that cannot be enqueued gets a 503 and its record says so, without the queue's words",
  async (_t, start) => {
    const gateway = await start();
    const failingQueue = {
      ...gateway.services.queue,
      send: () => Promise.reject(new Error("queue is down")),
    };
    const app = createApp({ ...gateway.services, queue: failingQueue }, { logger: silentLogger });
    const res = await app.request("/chat", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ conversation_id: "c", user_message: "hi" }),
    });
    assert.equal(res.status, 503);
    const { error } = await res.json() as ErrorBody;
    // The queue's own words go to the log only (they can name accounts and roles).
    assert.match(error.message, /Cannot enqueue job: the queue is unavailable \(request id /);
    const jobs: Job[] = await gateway.jobRecords();
    assert.equal(jobs.length, 1);
    assert.equal(jobs[0].status, "failed");
    assert.equal(jobs[0].error, "Could not be enqueued: the queue is unavailable");
  },
);
