/**
 * Anthropic's Messages API as its own clients see it: the real
 * `@anthropic-ai/sdk` over HTTP on 127.0.0.1, on both storage backends, with
 * raw requests for the headers and the refusals.
 */
import assert from "node:assert/strict";
// @ts-types="./support/anthropic_sdk.d.ts"
import Anthropic from "@anthropic-ai/sdk";
import { type ChatMessage, messageText } from "../lib/core/messages.ts";
import { backendTest, type TestGateway } from "./support/gateway.ts";
import { PNG } from "./support/image_server.ts";
import type { RecordedRequest, StandInAnswer } from "./support/stand_in_llm.ts";

const KEY = "sk-test-key-one";

/** Serves the gateway's app on a free loopback port. */
function serve(gateway: TestGateway) {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    gateway.app.fetch,
  );
  return { base: `http://127.0.0.1:${server.addr.port}`, stop: () => server.shutdown() };
}

function client(base: string, apiKey = KEY) {
  return new Anthropic({ baseURL: base, apiKey, maxRetries: 0, timeout: 60_000 });
}

/**
 * The stand-in vLLM's model: it calls `get_weather` when given tools and
 * answers the tool's result; it reasons when asked to think, fails when
 * asked to, and otherwise echoes, a piece every 100 ms.
 */
function vllmAnswer(request: RecordedRequest): StandInAnswer {
  const last = request.messages.at(-1)!;
  const text = messageText(last);
  if (last.role === "tool") return { reply: `The weather: ${text}` };
  if (request.tools) {
    return { reply: "", toolCalls: [{ name: "get_weather", arguments: '{"city":"Paris"}' }] };
  }
  if (text.includes("please fail")) return { status: 500, message: "the model fell over" };
  const reasoning = text.includes("think") ? "Let me think it over." : undefined;
  return { reply: `vllm says: ${text}`, reasoning, pauseMs: 100 };
}

/** POSTs a JSON body in-process. */
function post(
  gateway: TestGateway,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return Promise.resolve(gateway.app.request(path, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  }));
}

backendTest(
  "the Anthropic SDK creates, streams, calls tools, sends images and counts tokens",
  async (t, start) => {
    const gateway = await start({
      env: { GATEWAY_API_KEYS: KEY, MAX_ATTEMPTS: "1" },
      vllmAnswer,
    });
    await gateway.startWorker();
    const http = serve(gateway);
    const anthropic = client(http.base);
    try {
      await t.step(
        "messages.create answers with a message, its usage and the backend's reply",
        async () => {
          const message = await anthropic.messages.create({
            model: "test-text-model",
            max_tokens: 50,
            system: [{ type: "text", text: "Be brief.", cache_control: { type: "ephemeral" } }],
            messages: [{ role: "user", content: "Hello there" }],
            metadata: { user_id: "someone" },
          });
          assert.match(message.id, /^msg_/);
          assert.equal(message.type, "message");
          assert.equal(message.role, "assistant");
          assert.equal(message.model, "test-text-model");
          assert.deepEqual(message.content, [{ type: "text", text: "vllm says: Hello there" }]);
          assert.equal(message.stop_reason, "end_turn");
          assert.equal(message.stop_sequence, null);
          // The stand-in counts a word a token, and 3 a message.
          assert.equal(message.usage.input_tokens, 3 + 2 + 3 + 2);
          assert.equal(message.usage.output_tokens, 4);
          const sent = gateway.vllm.requests.at(-1)!;
          assert.deepEqual(sent.messages, [
            { role: "system", content: "Be brief." },
            { role: "user", content: "Hello there" },
          ]);
          assert.equal(sent.max_tokens, 50);
          assert.equal(
            sent.metadata,
            undefined,
            "metadata is Anthropic's: the backend never sees it",
          );
        },
      );

      await t.step(
        "messages.stream sends the text in deltas, and the final message has usage",
        async () => {
          const stream = anthropic.messages.stream({
            model: "test-text-model",
            max_tokens: 50,
            messages: [{ role: "user", content: "tell me about streams" }],
          });
          const deltas: string[] = [];
          const types: string[] = [];
          stream.on("streamEvent", (event) => {
            types.push(event.type);
            if (event.type === "content_block_delta" && event.delta.type === "text_delta") {
              deltas.push(event.delta.text);
            }
          });
          const final = await stream.finalMessage();
          assert.equal(deltas.join(""), "vllm says: tell me about streams");
          assert.ok(deltas.length > 1, `the reply came in ${deltas.length} piece(s)`);
          assert.deepEqual(final.content, [{
            type: "text",
            text: "vllm says: tell me about streams",
          }]);
          assert.equal(final.stop_reason, "end_turn");
          assert.equal(final.usage.output_tokens, 6);
          assert.equal(
            final.usage.input_tokens,
            3 + 4,
            "the backend's count replaces the estimate",
          );
          assert.equal(types[0], "message_start");
          assert.deepEqual(types.slice(-2), ["message_delta", "message_stop"]);
          assert.equal(gateway.vllm.requests.at(-1)!.stream, true);
        },
      );

      await t.step(
        "a tool round trip: tool_use from the model, tool_result sent back",
        async () => {
          const tools: Anthropic.Tool[] = [{
            name: "get_weather",
            description: "The weather in a city",
            input_schema: { type: "object", properties: { city: { type: "string" } } },
          }];
          const question: Anthropic.MessageParam = { role: "user", content: "Weather in Paris?" };
          const call = await anthropic.messages.stream({
            model: "test-text-model",
            max_tokens: 100,
            tools,
            tool_choice: { type: "auto" },
            messages: [question],
          }).finalMessage();
          assert.equal(call.stop_reason, "tool_use");
          const use = call.content.find((b) => b.type === "tool_use");
          assert.ok(use?.type === "tool_use", JSON.stringify(call.content));
          assert.equal(use.name, "get_weather");
          assert.deepEqual(use.input, { city: "Paris" });
          assert.deepEqual(gateway.vllm.requests.at(-1)!.tools, [{
            type: "function",
            function: {
              name: "get_weather",
              description: "The weather in a city",
              parameters: { type: "object", properties: { city: { type: "string" } } },
            },
          }]);
          assert.equal(gateway.vllm.requests.at(-1)!.tool_choice, "auto");

          const answer = await anthropic.messages.create({
            model: "test-text-model",
            max_tokens: 100,
            messages: [
              question,
              { role: "assistant", content: call.content },
              {
                role: "user",
                content: [{ type: "tool_result", tool_use_id: use.id, content: "sunny, 21 °C" }],
              },
            ],
          });
          assert.deepEqual(answer.content, [{ type: "text", text: "The weather: sunny, 21 °C" }]);
          const sent = gateway.vllm.requests.at(-1)!.messages;
          assert.deepEqual(
            sent.slice(1),
            [
              {
                role: "assistant",
                content: null,
                tool_calls: [{
                  id: use.id,
                  type: "function",
                  function: { name: "get_weather", arguments: '{"city":"Paris"}' },
                }],
              },
              { role: "tool", tool_call_id: use.id, content: "sunny, 21 °C" },
            ] satisfies ChatMessage[],
          );
        },
      );

      await t.step("a base64 image goes to the vision model as a data URL", async () => {
        const data = btoa(String.fromCharCode(...PNG));
        const message = await anthropic.messages.create({
          model: "test-vision-model",
          max_tokens: 50,
          messages: [{
            role: "user",
            content: [
              { type: "image", source: { type: "base64", media_type: "image/png", data } },
              { type: "text", text: "What is it?" },
            ],
          }],
        });
        assert.deepEqual(message.content, [{ type: "text", text: "ollama says: What is it?" }]);
        assert.deepEqual(gateway.ollama.requests.at(-1)!.messages[0].content, [
          { type: "image_url", image_url: { url: `data:image/png;base64,${data}` } },
          { type: "text", text: "What is it?" },
        ]);
      });

      await t.step("thinking, when asked for, shows the model's reasoning first", async () => {
        const request = {
          model: "test-text-model",
          max_tokens: 2000,
          messages: [{ role: "user" as const, content: "think about it" }],
        };
        const shown = await anthropic.messages.create({
          ...request,
          thinking: { type: "enabled", budget_tokens: 1024 },
        });
        assert.deepEqual(shown.content, [
          { type: "thinking", thinking: "Let me think it over.", signature: "" },
          { type: "text", text: "vllm says: think about it" },
        ]);
        const streamed = await anthropic.messages.stream({
          ...request,
          thinking: { type: "adaptive" },
        }).finalMessage();
        assert.deepEqual(streamed.content, shown.content);
        const hidden = await anthropic.messages.create(request);
        assert.deepEqual(hidden.content, [{ type: "text", text: "vllm says: think about it" }]);
      });

      await t.step("a stop sequence ends the reply and is named, streamed or not", async () => {
        const request = {
          model: "test-text-model",
          max_tokens: 50,
          stop_sequences: ["STOP"],
          messages: [{ role: "user" as const, content: "one two STOP three" }],
        };
        const whole = await anthropic.messages.create(request);
        assert.deepEqual(whole.content, [{ type: "text", text: "vllm says: one two " }]);
        assert.equal(whole.stop_reason, "stop_sequence");
        assert.equal(whole.stop_sequence, "STOP");
        assert.deepEqual(gateway.vllm.requests.at(-1)!.stop, ["STOP"]);
        assert.equal(gateway.vllm.requests.at(-1)!.include_stop_str_in_output, true);

        const deltas: string[] = [];
        const stream = anthropic.messages.stream(request);
        stream.on("text", (text) => deltas.push(text));
        const streamed = await stream.finalMessage();
        assert.equal(deltas.join(""), "vllm says: one two ", "the stop sequence is never sent");
        assert.equal(streamed.stop_reason, "stop_sequence");
        assert.equal(streamed.stop_sequence, "STOP");

        // Ollama drops the sequence without saying: the reply reads as ended by the model.
        const ollama = await anthropic.messages.create({ ...request, model: "test-vision-model" });
        assert.deepEqual(ollama.content, [{ type: "text", text: "ollama says: one two " }]);
        assert.equal(ollama.stop_reason, "end_turn");
        assert.equal(gateway.ollama.requests.at(-1)!.include_stop_str_in_output, undefined);
      });

      await t.step(
        "countTokens estimates the input; an unknown model is not_found_error",
        async () => {
          const { input_tokens } = await anthropic.messages.countTokens({
            model: "test-text-model",
            system: "Be brief.",
            messages: [{ role: "user", content: "How many tokens is this?" }],
          });
          // Four characters a token, and four a message: 9 and 24 characters in two messages.
          assert.equal(input_tokens, 4 + 3 + 4 + 6);
          await assert.rejects(
            () =>
              anthropic.messages.countTokens({
                model: "no-such-model",
                messages: [{ role: "user", content: "Hi" }],
              }),
            (err: unknown) =>
              err instanceof Anthropic.NotFoundError && err.type === "not_found_error" &&
              /no-such-model/.test(err.apiMessage ?? ""),
          );
        },
      );

      await t.step("a failed job is an api_error: a 502, or the stream's error event", async () => {
        const request = {
          model: "test-text-model",
          max_tokens: 50,
          messages: [{ role: "user" as const, content: "please fail" }],
        };
        await assert.rejects(
          () => anthropic.messages.create(request),
          (err: unknown) =>
            err instanceof Anthropic.APIError && err.status === 502 && err.type === "api_error" &&
            /Job failed/.test(err.apiMessage ?? ""),
        );
        await assert.rejects(
          () => anthropic.messages.stream(request).finalMessage(),
          (err: unknown) =>
            err instanceof Anthropic.APIError && err.type === "api_error" &&
            /Job failed/.test(err.apiMessage ?? ""),
        );
      });

      await t.step(
        "the key may come as x-api-key; a wrong one is an authentication_error",
        async () => {
          const body: Anthropic.MessageCreateParamsNonStreaming = {
            model: "test-text-model",
            max_tokens: 20,
            messages: [{ role: "user", content: "Hi" }],
          };
          const headers = { "content-type": "application/json", "anthropic-version": "2023-06-01" };
          const ok = await fetch(`${http.base}/v1/messages`, {
            method: "POST",
            headers: { ...headers, "x-api-key": KEY, "anthropic-beta": "some-beta-2099-01-01" },
            body: JSON.stringify(body),
          });
          assert.equal(ok.status, 200, await ok.clone().text());
          assert.equal((await ok.json()).content[0].text, "vllm says: Hi");
          const wrong = await fetch(`${http.base}/v1/messages`, {
            method: "POST",
            headers: { ...headers, "x-api-key": "sk-wrong" },
            body: JSON.stringify(body),
          });
          assert.equal(wrong.status, 401);
          const refusal = await wrong.json();
          assert.equal(refusal.type, "error");
          assert.equal(refusal.error.type, "authentication_error");
          assert.equal(typeof refusal.request_id, "string");
          await assert.rejects(
            () => client(http.base, "sk-wrong").messages.create(body),
            (err: unknown) => err instanceof Anthropic.AuthenticationError,
          );
        },
      );

      await t.step("every job was a stateless messages job: nothing stored", async () => {
        const jobs = await gateway.jobRecords();
        assert.ok(jobs.length >= 10, `${jobs.length} jobs`);
        assert.ok(jobs.every((job) => job.mode === "stateless" && job.api === "messages"));
        for (const job of jobs) {
          assert.equal(
            await gateway.services.store.getConversation(job.conversation_id),
            undefined,
          );
        }
      });
    } finally {
      await http.stop();
    }
  },
);

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
            client(http.base).messages.create({
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
