/**
 * Anthropic's Messages API as its own clients see it: the real
 * `@anthropic-ai/sdk` over HTTP on 127.0.0.1, on both storage backends, with
 * raw requests for the headers.
 */
import assert from "node:assert/strict";
// @ts-types="./support/anthropic_sdk.d.ts"
import Anthropic from "@anthropic-ai/sdk";
import { type ChatMessage, messageText } from "../lib/core/messages.ts";
import { anthropicClient, KEY, serve } from "./support/anthropic_clients.ts";
import { backendTest } from "./support/gateway.ts";
import { PNG } from "./support/image_server.ts";
import type { RecordedRequest, StandInAnswer } from "./support/stand_in_llm.ts";

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

backendTest(
  "the Anthropic SDK creates, streams, calls tools, sends images and counts tokens",
  async (t, start) => {
    const gateway = await start({
      env: { GATEWAY_API_KEYS: KEY, MAX_ATTEMPTS: "1" },
      vllmAnswer,
    });
    await gateway.startWorker();
    const http = serve(gateway);
    const anthropic = anthropicClient(http.base);
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
          // Sampling fields this SDK no longer types pass through to the backend.
          const sampling = { temperature: 0.2, top_p: 0.9, top_k: 40 };
          const ok = await fetch(`${http.base}/v1/messages`, {
            method: "POST",
            headers: { ...headers, "x-api-key": KEY, "anthropic-beta": "some-beta-2099-01-01" },
            body: JSON.stringify({ ...body, ...sampling }),
          });
          assert.equal(ok.status, 200, await ok.clone().text());
          assert.equal((await ok.json()).content[0].text, "vllm says: Hi");
          const sent = gateway.vllm.requests.at(-1)!;
          assert.deepEqual([sent.temperature, sent.top_p, sent.top_k], [0.2, 0.9, 40]);
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
            () => anthropicClient(http.base, "sk-wrong").messages.create(body),
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
