/**
 * The jobs Anthropic's Messages API makes: none for a refusal, which takes
 * Anthropic's error shape and names the field; one for a request repeated
 * with its `Idempotency-Key`; and, with `X-Conversation-Id`, a turn of a
 * stored conversation.
 */
import assert from "node:assert/strict";
// @ts-types="./support/anthropic_sdk.d.ts"
import Anthropic from "@anthropic-ai/sdk";
import { anthropicClient, post, serve } from "./support/anthropic_clients.ts";
import { backendTest } from "./support/gateway.ts";

backendTest(
  "refusals take Anthropic's shape, name the field, and store and queue nothing",
  async (t, start) => {
    const gateway = await start();
    const refuse = async (
      body: unknown,
      expected: { status: number; type: string; message: RegExp },
      headers: Record<string, string> = {},
      path = "/v1/messages",
    ) => {
      const res = await post(gateway, path, body, headers);
      const answer = await res.json();
      assert.equal(res.status, expected.status, JSON.stringify(answer));
      assert.equal(answer.type, "error", JSON.stringify(answer));
      assert.equal(answer.error.type, expected.type);
      assert.match(answer.error.message, expected.message);
    };
    const valid = {
      model: "test-text-model",
      max_tokens: 20,
      messages: [{ role: "user", content: "Hi" }],
    };
    const invalid = "invalid_request_error";

    await t.step("bad fields are each named", async () => {
      const { max_tokens: _, ...noMaxTokens } = valid;
      await refuse(noMaxTokens, { status: 400, type: invalid, message: /max_tokens: is required/ });
      await refuse({ ...valid, service_tier: "auto" }, {
        status: 400,
        type: invalid,
        message: /service_tier: is not supported by this gateway/,
      });
      await refuse({
        ...valid,
        messages: [{ role: "user", content: [{ type: "document", source: {} }] }],
      }, { status: 400, type: invalid, message: /messages\[0\]\.content\[0\]\.type: "document"/ });
      await refuse({
        ...valid,
        messages: [{
          role: "user",
          content: [{
            type: "image",
            source: { type: "base64", media_type: "image/bmp", data: "AAAA" },
          }],
        }],
      }, {
        status: 400,
        type: invalid,
        message: /messages\[0\]\.content\[0\]\.source\.media_type/,
      });
      await refuse({ ...valid, temperature: 1.5 }, {
        status: 400,
        type: invalid,
        message: /temperature: must be between 0 and 1/,
      });
      await refuse({ ...valid, tools: [{ type: "web_search_20250305", name: "web_search" }] }, {
        status: 400,
        type: invalid,
        message: /tools\[0\]\.type: "web_search_20250305" tools/,
      });
      await refuse({ ...valid, tool_choice: { type: "any" } }, {
        status: 400,
        type: invalid,
        message: /tool_choice: "any" needs tools/,
      });
      await refuse({
        ...valid,
        messages: [{ role: "assistant", content: [{ type: "tool_result", tool_use_id: "x" }] }],
      }, {
        status: 400,
        type: invalid,
        message: /messages\[0\]\.content\[0\]\.type: "tool_result" blocks cannot be in assistant/,
      });
      await refuse("{not json", { status: 400, type: invalid, message: /Invalid JSON body/ });
    });

    await t.step("what the backend would ignore is refused for it", async () => {
      await refuse({ ...valid, model: "test-vision-model", top_k: 5 }, {
        status: 400,
        type: invalid,
        message: /top_k: is not supported by Ollama/,
      });
    });

    await t.step("an unknown model is a not_found_error", async () => {
      await refuse({ ...valid, model: "claude-sonnet-4-5" }, {
        status: 404,
        type: "not_found_error",
        message: /"claude-sonnet-4-5" does not exist/,
      });
    });

    await t.step("the wrong method, path or content type answer in Anthropic's shape", async () => {
      const get = await gateway.app.request("/v1/messages");
      assert.equal(get.status, 405);
      assert.equal((await get.json()).error.type, invalid);
      const unknown = await post(gateway, "/v1/messages/batches", valid);
      assert.equal(unknown.status, 404);
      assert.equal((await unknown.json()).error.type, "not_found_error");
      const text = await gateway.app.request("/v1/messages", {
        method: "POST",
        headers: { "content-type": "text/plain" },
        body: JSON.stringify(valid),
      });
      assert.equal(text.status, 415);
      assert.equal((await text.json()).error.type, invalid);
    });

    await t.step("the SDK raises them as BadRequestError with Anthropic's type", async () => {
      const http = serve(gateway);
      try {
        await assert.rejects(
          () =>
            anthropicClient(http.base).messages.create({
              ...valid,
              messages: [{ role: "user", content: [] }],
            } as Anthropic.MessageCreateParamsNonStreaming),
          (err: unknown) =>
            err instanceof Anthropic.BadRequestError && err.type === invalid &&
            /messages\[0\]\.content: must hold at least one block/.test(err.apiMessage ?? ""),
        );
      } finally {
        await http.stop();
      }
    });

    await t.step("nothing was stored or queued", async () => {
      assert.deepEqual(await gateway.jobRecords(), []);
      for (const lane of ["priority", "default"] as const) {
        await gateway.depthBecomes(lane, { waiting: 0, in_flight: 0, dead: 0 });
      }
    });
  },
);

backendTest(
  "an Idempotency-Key repeat makes one job; X-Conversation-Id keeps the history",
  async (t, start) => {
    const gateway = await start();
    await gateway.startWorker();
    const body = {
      model: "test-text-model",
      max_tokens: 20,
      messages: [{ role: "user", content: "just once" }],
    };

    await t.step("the same key twice is one job, and the repeat says so", async () => {
      const key = { "idempotency-key": crypto.randomUUID() };
      const first = await post(gateway, "/v1/messages", body, key);
      assert.equal(first.status, 200, await first.clone().text());
      const again = await post(gateway, "/v1/messages", body, key);
      assert.equal(again.status, 200);
      assert.equal(again.headers.get("idempotent-replayed"), "true");
      assert.equal((await again.json()).id, (await first.json()).id);
      assert.equal((await gateway.jobRecords()).length, 1);
      const other = await post(gateway, "/v1/messages", { ...body, max_tokens: 21 }, key);
      assert.equal(other.status, 409);
      assert.equal((await other.json()).error.type, "conflict_error");
    });

    await t.step("X-Conversation-Id sends the stored history and stores the turn", async () => {
      const memory = { "x-conversation-id": "anthropic-memory" };
      for (const text of ["first", "second"]) {
        const res = await post(gateway, "/v1/messages", {
          ...body,
          system: "You are kind.",
          messages: [{ role: "user", content: text }],
        }, memory);
        assert.equal(res.status, 200, await res.clone().text());
      }
      assert.deepEqual(gateway.vllm.requests.at(-1)!.messages.map((m) => m.content), [
        "You are kind.",
        "first",
        "vllm says: first",
        "second",
      ]);
      assert.deepEqual(
        (await gateway.storedMessages("anthropic-memory")).map((m) => m.content),
        ["first", "vllm says: first", "second", "vllm says: second"],
      );
      const jobs = await gateway.jobRecords();
      assert.equal(
        jobs.filter((job) => job.mode === undefined && job.api === "messages").length,
        2,
      );
    });

    await t.step("with X-Conversation-Id, two tool results at once are refused", async () => {
      const before = (await gateway.jobRecords()).length;
      const res = await post(gateway, "/v1/messages", {
        ...body,
        messages: [{
          role: "user",
          content: [
            { type: "tool_result", tool_use_id: "a", content: "sunny" },
            { type: "tool_result", tool_use_id: "b", content: "rainy" },
          ],
        }],
      }, { "x-conversation-id": "anthropic-memory" });
      assert.equal(res.status, 400);
      const { error } = await res.json();
      assert.equal(error.type, "invalid_request_error");
      assert.match(error.message, /messages\[0\]\.content: with X-Conversation-Id/);
      assert.equal((await gateway.jobRecords()).length, before);
    });
  },
);
