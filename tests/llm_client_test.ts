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
    assert.deepEqual(reply, { role: "assistant", content: "cloud says: hi" });
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
