/**
 * The gateway as the tools people already have see it: the real `openai` npm
 * SDK over HTTP on 127.0.0.1, and raw requests for the error cases.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { backendTest, type TestGateway } from "./support/gateway.ts";
import { pngDataUrl, startImageServer } from "./support/image_server.ts";
import { slowEchoAnswer } from "./support/stand_in_llm.ts";

const KEY = "sk-test-key-one";
const OTHER_KEY = "sk-test-key-two";

/** Serves the gateway's app on a free loopback port, stopped with the test's gateway. */
function serve(gateway: TestGateway) {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    gateway.app.fetch,
  );
  const base = `http://127.0.0.1:${server.addr.port}`;
  return { base, stop: () => server.shutdown() };
}

function client(base: string, apiKey = KEY) {
  return new OpenAI({ baseURL: `${base}/v1`, apiKey, maxRetries: 0, timeout: 60_000 });
}

backendTest(
  "the openai SDK lists models, completes, streams and sends images",
  async (t, start) => {
    const images = startImageServer();
    const gateway = await start({
      env: { GATEWAY_API_KEYS: `${KEY},${OTHER_KEY}`, IMAGE_ALLOWED_HOSTS: images.host },
      vllmAnswer: slowEchoAnswer("vllm"),
    });
    await gateway.startWorker();
    const http = serve(gateway);
    const openai = client(http.base);
    try {
      await t.step("GET /v1/models lists both backends' models", async () => {
        const models = [];
        for await (const model of openai.models.list()) models.push(model);
        assert.deepEqual(
          models.map((m) => [m.id, m.object, m.owned_by]),
          [["test-text-model", "model", "vllm"], ["test-vision-model", "model", "ollama"]],
        );
      });

      await t.step("a plain completion comes back as a chat.completion", async () => {
        const completion = await openai.chat.completions.create({
          model: "test-text-model",
          messages: [{ role: "system", content: "Be brief." }, {
            role: "user",
            content: "Hello there",
          }],
          temperature: 0.2,
          max_tokens: 50,
        });
        assert.equal(completion.object, "chat.completion");
        assert.equal(completion.choices[0].message.content, "vllm says: Hello there");
        assert.equal(completion.choices[0].finish_reason, "stop");
        const sent = gateway.vllm.requests.at(-1)!;
        assert.deepEqual(sent.messages, [
          { role: "system", content: "Be brief." },
          { role: "user", content: "Hello there" },
        ]);
        assert.equal(sent.temperature, 0.2);
        assert.equal(sent.max_tokens, 50);
      });

      await t.step(
        "a streamed completion arrives in pieces that reassemble the reply",
        async () => {
          const stream = await openai.chat.completions.create({
            model: "test-text-model",
            messages: [{ role: "user", content: "tell me a fairly long story about streams" }],
            stream: true,
            stream_options: { include_usage: true },
          });
          const pieces: string[] = [];
          let finish: string | null = null;
          for await (const chunk of stream) {
            assert.equal(chunk.object, "chat.completion.chunk");
            const choice = chunk.choices[0];
            if (choice?.delta?.content) pieces.push(choice.delta.content);
            if (choice?.finish_reason) finish = choice.finish_reason;
          }
          assert.equal(pieces.join(""), "vllm says: tell me a fairly long story about streams");
          assert.ok(pieces.length > 1, `the reply came in ${pieces.length} piece(s)`);
          assert.equal(finish, "stop");
          assert.equal(
            gateway.vllm.requests.at(-1)!.stream,
            true,
            "the worker asked the backend to stream",
          );
        },
      );

      await t.step("an image part goes to Ollama as a data URL", async () => {
        const completion = await openai.chat.completions.create({
          model: "test-vision-model",
          messages: [{
            role: "user",
            content: [{ type: "text", text: "What is it?" }, {
              type: "image_url",
              image_url: { url: images.pngUrl },
            }],
          }],
        });
        assert.equal(completion.choices[0].message.content, "ollama says: What is it?");
        const parts = gateway.ollama.requests.at(-1)!.messages[0].content;
        assert.deepEqual(parts, [
          { type: "text", text: "What is it?" },
          { type: "image_url", image_url: { url: pngDataUrl() } },
        ]);
      });

      await t.step(
        "a wrong key gets a 401 the SDK reports as an authentication error",
        async () => {
          await assert.rejects(
            () =>
              client(http.base, "sk-wrong").chat.completions.create({
                model: "m",
                messages: [{ role: "user", content: "hi" }],
              }),
            (err: unknown) => err instanceof OpenAI.AuthenticationError && err.status === 401,
          );
        },
      );

      await t.step("stateless requests leave no conversation behind", async () => {
        const jobs = await gateway.jobRecords();
        assert.equal(jobs.length, 3, "the text, streamed and image requests");
        assert.ok(jobs.every((job) => job.mode === "stateless"));
        for (const job of jobs) {
          assert.equal(
            await gateway.services.store.getConversation(job.conversation_id),
            undefined,
          );
        }
      });
    } finally {
      await http.stop();
      await images.stop();
    }
  },
);

backendTest(
  "X-Conversation-Id keeps the history on the server: only the new message is sent",
  async (_t, start) => {
    const gateway = await start();
    await gateway.startWorker();
    const http = serve(gateway);
    const openai = new OpenAI({
      baseURL: `${http.base}/v1`,
      apiKey: "unused",
      maxRetries: 0,
      defaultHeaders: { "X-Conversation-Id": "memory-1" },
    });
    try {
      for (const text of ["first", "second"]) {
        await openai.chat.completions.create({
          model: "test-text-model",
          messages: [{ role: "system", content: "You are kind." }, { role: "user", content: text }],
        });
      }
      const stored = await (await gateway.app.request("/conversation?conversation_id=memory-1"))
        .json();
      assert.deepEqual(stored.messages.map((m: { content: string }) => m.content), [
        "first",
        "vllm says: first",
        "second",
        "vllm says: second",
      ]);
      assert.deepEqual(gateway.vllm.requests.at(-1)!.messages.map((m) => m.content), [
        "You are kind.",
        "first",
        "vllm says: first",
        "second",
      ]);
    } finally {
      await http.stop();
    }
  },
);

backendTest(
  "X-Conversation-Id refuses what it cannot store right: a continue, several tool results at once",
  async (_t, start) => {
    const gateway = await start();
    const post = (messages: unknown[]) =>
      gateway.app.request("/v1/chat/completions", {
        method: "POST",
        headers: { "content-type": "application/json", "x-conversation-id": "memory-2" },
        body: JSON.stringify({ model: "test-text-model", messages }),
      });
    const toolCall = (id: string) => ({
      id,
      type: "function",
      function: { name: "weather", arguments: "{}" },
    });
    const refusals = [
      await post([{ role: "user", content: "Hi" }, { role: "assistant", content: "Hello, I" }]),
      await post([
        { role: "assistant", content: null, tool_calls: [toolCall("a"), toolCall("b")] },
        { role: "tool", tool_call_id: "a", content: "sunny" },
        { role: "tool", tool_call_id: "b", content: "rainy" },
      ]),
    ];
    for (const res of refusals) {
      assert.equal(res.status, 400);
      const { error } = await res.json();
      assert.equal(error.code, "invalid_field");
      assert.match(error.message, /X-Conversation-Id|continue/);
    }
    assert.deepEqual(await gateway.jobRecords(), []);
    assert.deepEqual(await gateway.storedMessages("memory-2"), []);
  },
);

backendTest(
  "an agent's 80 KB of tools reach the backend whole, kept beside the job record",
  async (_t, start) => {
    const gateway = await start();
    await gateway.startWorker();
    const tools = Array.from({ length: 40 }, (_, i) => ({
      type: "function",
      function: {
        name: `tool_${i}`,
        description: `Tool ${i}. ${"Says what it does at length. ".repeat(70)}`,
        parameters: { type: "object", properties: { city: { type: "string" } } },
      },
    }));
    const res = await gateway.app.request("/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "test-text-model",
        messages: [{ role: "user", content: "Which tool?" }],
        tools,
      }),
    });
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal((await res.json()).choices[0].message.content, "vllm says: Which tool?");
    assert.ok(JSON.stringify(tools).length > 80_000);
    assert.deepEqual(gateway.vllm.requests.at(-1)!.tools, tools);
    const [record] = await gateway.jobRecords();
    assert.equal(record.params, undefined);
    assert.match(record.params_ref ?? "", /^gateway-blob:/);
  },
);

backendTest("the completions route checks its body and bounds its wait", async (t, start) => {
  const gateway = await start({
    env: { SYNC_TIMEOUT_S: "1" },
    vllmAnswer: async () => {
      await new Promise((r) => setTimeout(r, 2500));
      return { reply: "late" };
    },
  });
  await gateway.startWorker();
  const post = (body: unknown) =>
    gateway.app.request("/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });

  await t.step("a bad body gets one 400 listing every problem", async () => {
    const res = await post({ model: 3, messages: [{ role: "user", content: 5 }], temperature: 9 });
    assert.equal(res.status, 400);
    const { error } = await res.json();
    const params = error.details.map((d: { param: string }) => d.param);
    assert.ok(params.includes("model") && params.includes("temperature"), JSON.stringify(params));
    assert.ok(
      params.some((p: string) => p.startsWith("messages[0].content")),
      JSON.stringify(params),
    );
    assert.deepEqual(await gateway.jobRecords(), []);
  });

  await t.step("past SYNC_TIMEOUT_S the answer is a 504 that carries the job id", async () => {
    const res = await post({
      model: "test-text-model",
      messages: [{ role: "user", content: "slow" }],
    });
    assert.equal(res.status, 504);
    const { error } = await res.json();
    assert.equal(error.code, "timeout");
    assert.match(error.message, /Timed out after 1 s/);
    assert.equal(typeof error.job_id, "string");
    const job = await gateway.waitForJob(error.job_id);
    assert.equal(job.reply, "late", "the job went on and finished");
  });

  await t.step("an unknown route is a JSON 404", async () => {
    const res = await gateway.app.request("/v1/audio/speech", { method: "POST", body: "{}" });
    assert.equal(res.status, 404);
    assert.equal((await res.json()).error.type, "not_found_error");
  });
});
