import assert from "node:assert/strict";
import { createApp } from "../lib/http/app.ts";
import type { ErrorBody } from "../lib/http/errors.ts";
import { createLogger } from "../lib/core/log.ts";
import { startTestGateway } from "./support/gateway.ts";

Deno.test("with GATEWAY_API_KEYS set, every route but /healthz needs a valid bearer key", async (t) => {
  const gateway = await startTestGateway("embedded", {
    env: { GATEWAY_API_KEYS: "key-one, key-two" },
  });
  const lines: string[] = [];
  const app = createApp(gateway.services, {
    logger: createLogger({ write: (line) => lines.push(line), level: "debug" }),
  });
  const chat = (headers: Record<string, string>) =>
    app.request("/chat", {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify({ conversation_id: "keyed", user_message: "hi" }),
    });
  try {
    await t.step("/healthz needs no key", async () => {
      assert.equal((await app.request("/healthz")).status, 200);
    });

    await t.step(
      "a missing key gets 401 in OpenAI's error shape and enqueues nothing",
      async () => {
        const res = await chat({});
        assert.equal(res.status, 401);
        const { error } = await res.json() as ErrorBody;
        assert.equal(error.type, "authentication_error");
        assert.equal(error.code, "missing_api_key");
        assert.equal((await gateway.depth("default")).waiting, 0);
      },
    );

    await t.step("a wrong key gets 401, on reads too", async () => {
      const res = await chat({ authorization: "Bearer key-three" });
      assert.equal(res.status, 401);
      assert.equal((await res.json() as ErrorBody).error.code, "invalid_api_key");
      const read = await app.request("/conversation?conversation_id=keyed", {
        headers: { authorization: "Bearer nope" },
      });
      assert.equal(read.status, 401);
    });

    await t.step("either configured key is accepted", async () => {
      assert.equal((await chat({ authorization: "Bearer key-one" })).status, 202);
      assert.equal((await chat({ authorization: "bearer key-two" })).status, 202);
    });

    await t.step("no key appears in the logs", () => {
      assert.ok(lines.length > 0, "requests were logged");
      for (const line of lines) {
        assert.ok(!/key-(one|two|three)/.test(line), `a key leaked into the log: ${line}`);
      }
    });
  } finally {
    await gateway.stop();
  }
});

Deno.test("with GATEWAY_API_KEY_SHA256, a key is accepted by its digest alone, as the same owner", async () => {
  const digest = async (key: string) =>
    Array.from(
      new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key))),
      (b) => b.toString(16).padStart(2, "0"),
    ).join("");
  const byKey = await startTestGateway("embedded", { env: { GATEWAY_API_KEYS: "key-one" } });
  const byDigest = createApp({
    ...byKey.services,
    config: { ...byKey.config, apiKeys: [], apiKeyDigests: [await digest("key-one")] },
  }, { logger: createLogger({ write: () => {} }) });
  try {
    const chat = (key: string) =>
      byDigest.request("/chat", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
        body: JSON.stringify({ conversation_id: "digest", user_message: "hi" }),
      });
    assert.equal((await chat("key-two")).status, 401);
    const accepted = await chat("key-one");
    assert.equal(accepted.status, 202);
    const { job_id } = await accepted.json();
    const read = await byKey.app.request(`/jobs/${job_id}`, {
      headers: { authorization: "Bearer key-one" },
    });
    assert.equal(read.status, 200, "the job belongs to the key, however it was configured");
  } finally {
    await byKey.stop();
  }
});
