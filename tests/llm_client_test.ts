/** The one call every backend shares, against a stand-in on loopback. */
import assert from "node:assert/strict";
import { backendsFromConfig } from "../lib/core/backends.ts";
import { loadConfig } from "../lib/core/config.ts";
import { BackendError, chatCompletion } from "../lib/worker/llm_client.ts";
import { startStandInLlm } from "./support/stand_in_llm.ts";

Deno.test("chatCompletion() sends the backend's API key, and a backend that wants one refuses without it", async () => {
  const server = startStandInLlm({ name: "cloud", models: [{ id: "m" }], apiKey: "sk-backend" });
  const backendWith = (key?: string) =>
    backendsFromConfig(loadConfig({
      LLM_BACKENDS: "cloud",
      LLM_CLOUD_KIND: "openai",
      LLM_CLOUD_BASE_URL: server.baseUrl,
      ...(key ? { LLM_CLOUD_API_KEY: key } : {}),
    }))[0];
  const messages = [{ role: "user" as const, content: "hi" }];
  try {
    const reply = await chatCompletion(backendWith("sk-backend"), messages, {
      model: "m",
      idleTimeoutMs: 5_000,
      maxReplyMs: 30_000,
    });
    assert.deepEqual(reply.message, { role: "assistant", content: "cloud says: hi" });
    const err = await chatCompletion(backendWith(), messages, {
      model: "m",
      idleTimeoutMs: 5_000,
      maxReplyMs: 30_000,
    })
      .then(() => undefined, (err) => err);
    assert.ok(err instanceof BackendError);
    assert.equal(err.status, 401);
    assert.equal(err.retryable, false);
  } finally {
    await server.stop();
  }
});

/** The one backend of a stand-in, by the stand-in's kind. */
function backendOf(server: { baseUrl: string; kind: string }) {
  return backendsFromConfig(loadConfig({
    LLM_BACKENDS: "b",
    LLM_B_KIND: server.kind,
    LLM_B_BASE_URL: server.baseUrl,
  }))[0];
}

const question = [{ role: "user" as const, content: "Weather in Paris?" }];
const limits = { model: "m", idleTimeoutMs: 5_000, maxReplyMs: 30_000 };

Deno.test("chatCompletion() puts a streamed tool call together as vLLM and Ollama each send it", async () => {
  for (const kind of ["vllm", "ollama"] as const) {
    const server = startStandInLlm({
      name: kind,
      kind,
      models: [{ id: "m" }],
      answer: () => ({
        reply: "",
        reasoning: "The user wants weather.",
        toolCalls: [{ name: "get_weather", arguments: '{"city": "Paris", "unit": "celsius"}' }],
      }),
    });
    try {
      const reply = await chatCompletion(backendOf(server), question, limits);
      assert.equal(reply.finishReason, "tool_calls", kind);
      assert.equal(reply.message.content, null, kind);
      assert.equal(reply.message.reasoning_content, "The user wants weather.", kind);
      assert.equal(reply.message.tool_calls?.length, 1, kind);
      const [call] = reply.message.tool_calls!;
      assert.equal(call.type, "function");
      assert.equal(call.function.name, "get_weather", `${kind}: the name once`);
      assert.deepEqual(JSON.parse(call.function.arguments), { city: "Paris", unit: "celsius" });
      assert.ok(call.id.length > 0);
      assert.ok(reply.usage && reply.usage.total_tokens > 0, `${kind}: the backend's counts`);
      const sent = server.requests[0];
      assert.equal(sent.stream, true, "the backend is always asked to stream");
      assert.deepEqual(sent.stream_options, { include_usage: true });
    } finally {
      await server.stop();
    }
  }
});

Deno.test("chatCompletion() tells each piece as it comes, and a reply that keeps flowing outlasts the silence limit", async () => {
  const words = Array.from({ length: 25 }, (_, i) => `w${i}`).join(" ");
  const server = startStandInLlm({
    name: "vllm",
    models: [{ id: "m" }],
    answer: () => ({ reply: words, pauseMs: 100 }),
  });
  try {
    const seen: string[] = [];
    const reply = await chatCompletion(backendOf(server), question, {
      ...limits,
      idleTimeoutMs: 1_000,
      onProgress: (soFar) => seen.push(soFar.content),
    });
    assert.equal(reply.message.content, words, "the whole reply, though it took longer than 1 s");
    assert.ok(seen.length >= 25, `pieces told as they came: ${seen.length}`);
    assert.equal(seen.at(-1), words);
  } finally {
    await server.stop();
  }
});

Deno.test("chatCompletion() gives up on a backend that goes silent, and on a reply that runs too long", async () => {
  const server = startStandInLlm({
    name: "vllm",
    models: [{ id: "m" }],
    answer: () => ({ reply: "slow words here", pauseMs: 1_500 }),
  });
  try {
    const silent = await chatCompletion(backendOf(server), question, {
      ...limits,
      idleTimeoutMs: 300,
    }).then(() => undefined, (err) => err);
    assert.ok(silent instanceof BackendError, String(silent));
    assert.match(silent.message, /went silent for 0\.3 s \(LLM_TIMEOUT_S\)/);
    assert.equal(silent.retryable, true);
    const long = await chatCompletion(backendOf(server), question, {
      ...limits,
      maxReplyMs: 1_000,
    }).then(() => undefined, (err) => err);
    assert.ok(long instanceof BackendError, String(long));
    assert.match(long.message, /still answering after 1 s \(LLM_MAX_REPLY_S\)/);
  } finally {
    await server.stop();
  }
});

Deno.test("chatCompletion() reads a whole reply from a server that does not stream", async () => {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () =>
      Response.json({
        choices: [{
          message: { role: "assistant", content: "whole", reasoning: "thought" },
          finish_reason: "length",
        }],
        usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 },
      }),
  );
  try {
    const reply = await chatCompletion(
      backendOf({ baseUrl: `http://127.0.0.1:${server.addr.port}/v1`, kind: "openai" }),
      question,
      limits,
    );
    assert.deepEqual(reply, {
      message: { role: "assistant", content: "whole", reasoning_content: "thought" },
      finishReason: "length",
      usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 },
    });
  } finally {
    await server.shutdown();
  }
});
