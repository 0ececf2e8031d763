import assert from "node:assert/strict";
import type { Conversation } from "../lib/core/store.ts";
import { backendTest, type TestGateway } from "./support/gateway.ts";
import { pngDataUrl, startImageServer } from "./support/image_server.ts";

async function conversation(gateway: TestGateway, id: string): Promise<Conversation> {
  const res = await gateway.app.request(`/conversation?conversation_id=${encodeURIComponent(id)}`);
  assert.equal(res.status, 200);
  return await res.json();
}

backendTest("a text message and its reply land in the conversation in order", async (_t, start) => {
  const gateway = await start();
  await gateway.startWorker();
  const { job_id } = await gateway.send({ conversation_id: "abc-123", user_message: "Hi" });
  const job = await gateway.waitForJob(job_id);
  assert.equal(job.status, "succeeded");
  assert.equal(job.reply, "vllm says: Hi");
  assert.equal(job.attempts, 1);
  const stored = await conversation(gateway, "abc-123");
  assert.deepEqual(stored.messages, [
    { role: "user", content: "Hi" },
    { role: "assistant", content: "vllm says: Hi" },
  ]);
  assert.ok(!Number.isNaN(Date.parse(stored.updated_at)), "updated_at is an ISO date");
  await gateway.depthBecomes(
    "default",
    { waiting: 0, in_flight: 0, dead: 0 },
    "the message to be deleted",
  );
});

backendTest(
  "a second message sends the first exchange to the backend as history",
  async (_t, start) => {
    const gateway = await start();
    await gateway.startWorker();
    await gateway.waitForJob(
      (await gateway.send({ conversation_id: "c", user_message: "one" })).job_id,
    );
    await gateway.waitForJob(
      (await gateway.send({ conversation_id: "c", user_message: "two" })).job_id,
    );
    assert.equal(gateway.vllm.requests.length, 2);
    assert.deepEqual(gateway.vllm.requests[1].messages, [
      { role: "user", content: "one" },
      { role: "assistant", content: "vllm says: one" },
      { role: "user", content: "two" },
    ]);
    assert.equal(gateway.vllm.requests[1].model, "test-text-model");
    const stored = await conversation(gateway, "c");
    assert.deepEqual(stored.messages.map((m) => m.content), [
      "one",
      "vllm says: one",
      "two",
      "vllm says: two",
    ]);
  },
);

backendTest(
  "an image message goes to Ollama as a data URL, and a text one to vLLM",
  async (_t, start) => {
    const images = startImageServer();
    try {
      const gateway = await start({ env: { IMAGE_ALLOWED_HOSTS: images.host } });
      await gateway.startWorker();
      const storedParts = [
        { type: "text", text: "What is this?" },
        { type: "image_url", image_url: { url: images.pngUrl } },
      ];
      const image = await gateway.send({
        conversation_id: "pics",
        user_message: "What is this?",
        images: [{ image_url: images.pngUrl }],
      });
      assert.equal(image.route, "ollama");
      assert.equal((await gateway.waitForJob(image.job_id)).status, "succeeded");
      const text = await gateway.send({ conversation_id: "pics", user_message: "And now?" });
      assert.equal(text.route, "vllm");
      await gateway.waitForJob(text.job_id);

      assert.equal(gateway.ollama.requests.length, 1);
      assert.equal(gateway.ollama.requests[0].model, "test-vision-model");
      // Ollama only takes base64 data URLs: the worker fetched the image and inlined it.
      assert.deepEqual(gateway.ollama.requests[0].messages, [{
        role: "user",
        content: [
          { type: "text", text: "What is this?" },
          { type: "image_url", image_url: { url: pngDataUrl() } },
        ],
      }]);
      assert.equal(gateway.vllm.requests.length, 1);
      // The text model gets a note where the image was, never the image part.
      assert.deepEqual(gateway.vllm.requests[0].messages[0], {
        role: "user",
        content: `What is this?\n[image: ${images.pngUrl}]`,
      });
      const stored = await conversation(gateway, "pics");
      assert.deepEqual(
        stored.messages[0].content,
        storedParts,
        "the history keeps the original URL, not base64",
      );
      assert.equal(stored.messages.length, 4);
    } finally {
      await images.stop();
    }
  },
);

backendTest(
  "an image on a private address is refused unless its host is allowed",
  async (_t, start) => {
    const images = startImageServer();
    try {
      const gateway = await start();
      await gateway.startWorker();
      const { job_id } = await gateway.send({
        conversation_id: "ssrf",
        user_message: "Look",
        images: [{ image_url: images.pngUrl }],
      });
      const job = await gateway.waitForJob(job_id);
      assert.equal(job.status, "failed");
      assert.equal(job.attempts, 1, "a refused image is not retried");
      assert.match(job.error ?? "", /Cannot use image/);
      assert.equal(gateway.ollama.requests.length, 0, "Ollama was never called");
      await gateway.depthBecomes("default", { waiting: 0, in_flight: 0, dead: 1 });
    } finally {
      await images.stop();
    }
  },
);

backendTest("with both queues loaded, the priority jobs are taken first", async (_t, start) => {
  // One job at a time, so the order the backend sees is the order the worker took them.
  const gateway = await start({ env: { VLLM_CONCURRENCY: "1", OLLAMA_CONCURRENCY: "1" } });
  const jobs = [];
  for (let i = 0; i < 3; i++) {
    jobs.push(await gateway.send({ conversation_id: `n${i}`, user_message: `normal ${i}` }));
  }
  for (let i = 0; i < 3; i++) {
    jobs.push(
      await gateway.send({
        conversation_id: `h${i}`,
        user_message: `high ${i}`,
        priority: "high",
      }),
    );
  }
  await gateway.startWorker();
  for (const { job_id } of jobs) await gateway.waitForJob(job_id);
  const order = gateway.vllm.requests.map((r) => String(r.messages.at(-1)?.content));
  assert.deepEqual(order.slice(0, 3).sort(), ["high 0", "high 1", "high 2"]);
  assert.deepEqual(order.slice(3).sort(), ["normal 0", "normal 1", "normal 2"]);
});

backendTest(
  "a backend error leaves the message for redelivery, then fails the job with its reason",
  async (_t, start) => {
    const gateway = await start({
      vllmAnswer: () => ({ status: 500, message: "model crashed" }),
      env: { MAX_ATTEMPTS: "3" },
    });
    await gateway.startWorker();
    const { job_id } = await gateway.send({ conversation_id: "broken", user_message: "Hi" });
    const job = await gateway.waitForJob(job_id);
    assert.equal(job.status, "failed");
    assert.equal(job.attempts, 3);
    assert.match(job.error ?? "", /Gave up after 3 attempts/);
    assert.match(job.error ?? "", /answered 500/);
    assert.ok(!job.error?.includes("model crashed"), "the backend's own words stay in the log");
    assert.equal(gateway.vllm.requests.length, 3, "each delivery called the backend once");
    // The message was never deleted: the queue moves it to the dead-letter queue.
    await gateway.depthBecomes("default", { waiting: 0, in_flight: 0, dead: 1 });
    const missing = await gateway.app.request("/conversation?conversation_id=broken");
    assert.equal(missing.status, 404, "a failed job appends nothing");
  },
);
