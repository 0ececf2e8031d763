/**
 * The Responses API's function calls, reasoning and failures as the `openai`
 * SDK sees them, and its refusals: in OpenAI's shape, naming the field, and
 * leaving nothing stored or queued.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { backendTest } from "./support/gateway.ts";
import { messageText } from "../lib/core/messages.ts";
import { client, serve } from "./support/responses_client.ts";
import type { RecordedRequest, StandInAnswer } from "./support/stand_in_llm.ts";

/**
 * Calls get_weather for a user's question, and answers with a function's
 * output once it has one; thinks aloud when asked to, and fails when asked to.
 */
function weatherTool(request: RecordedRequest): StandInAnswer {
  const last = request.messages.at(-1)!;
  if (last.role === "tool") return { reply: `It is ${messageText(last)}.` };
  if (messageText(last) === "think") {
    return { reasoning: "Let me think it over slowly.", reply: "Done thinking.", pauseMs: 20 };
  }
  if (messageText(last) === "fail") return { status: 400, message: "the model refuses" };
  if (!request.tools) return { reply: "no tools" };
  return {
    reply: "",
    toolCalls: [{ name: "get_weather", arguments: JSON.stringify({ city: messageText(last) }) }],
  };
}

const WEATHER = {
  type: "function" as const,
  name: "get_weather",
  description: "The weather in a city",
  parameters: {
    type: "object",
    properties: { city: { type: "string" } },
    required: ["city"],
    additionalProperties: false,
  },
  strict: true,
};
backendTest(
  "function calls, reasoning and failures come as Responses items and events",
  async (t, start) => {
    const gateway = await start({ vllmAnswer: weatherTool });
    await gateway.startWorker();
    const http = serve(gateway);
    const openai = client(http.base);
    try {
      await t.step("chained with previous_response_id", async () => {
        const asked = await openai.responses.create({
          model: "test-text-model",
          input: "Paris",
          tools: [WEATHER],
        });
        const call = asked.output.find((item) => item.type === "function_call");
        assert.ok(call?.type === "function_call", JSON.stringify(asked.output));
        assert.equal(call.name, "get_weather");
        assert.deepEqual(JSON.parse(call.arguments), { city: "Paris" });
        assert.equal(asked.output.length, 1, "a call alone has no empty message beside it");
        assert.deepEqual(gateway.vllm.requests.at(-1)!.tools, [{
          type: "function",
          function: {
            name: "get_weather",
            description: "The weather in a city",
            parameters: WEATHER.parameters,
            strict: true,
          },
        }]);
        assert.deepEqual(asked.tools, [WEATHER]);

        const answered = await openai.responses.create({
          model: "test-text-model",
          previous_response_id: asked.id,
          input: [{ type: "function_call_output", call_id: call.call_id, output: "sunny" }],
          tools: [WEATHER],
        });
        assert.equal(answered.output_text, "It is sunny.");
        const sent = gateway.vllm.requests.at(-1)!.messages;
        assert.deepEqual(sent.map((m) => m.role), ["user", "assistant", "tool"]);
        assert.deepEqual(sent[1].tool_calls?.map((c) => c.id), [call.call_id]);
        assert.equal(sent[2].tool_call_id, call.call_id);
      });

      await t.step("stateless, with the items sent back, and streamed", async () => {
        const stream = openai.responses.stream({
          model: "test-text-model",
          input: "Oslo",
          tools: [WEATHER],
          store: false,
        });
        const types = new Set<string>();
        stream.on("event", (event) => types.add(event.type));
        const asked = await stream.finalResponse();
        for (
          const type of [
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
          ]
        ) assert.ok(types.has(type), `${type} in ${[...types]}`);
        const call = asked.output.find((item) => item.type === "function_call");
        assert.ok(call?.type === "function_call");
        const answered = await openai.responses.create({
          model: "test-text-model",
          input: [
            { role: "user", content: "Oslo" },
            // The output as the client got it goes back as input, as agents send it.
            ...asked.output as OpenAI.Responses.ResponseInputItem[],
            { type: "function_call_output", call_id: call.call_id, output: "snowing" },
          ],
          tools: [WEATHER],
          store: false,
        });
        assert.equal(answered.output_text, "It is snowing.");
      });

      await t.step("reasoning streams as a reasoning item before the message", async () => {
        const stream = openai.responses.stream({ model: "test-text-model", input: "think" });
        const reasoning: string[] = [];
        stream.on("event", (event) => {
          if (event.type === "response.reasoning_text.delta") reasoning.push(event.delta);
        });
        const final = await stream.finalResponse();
        assert.equal(reasoning.join(""), "Let me think it over slowly.");
        assert.deepEqual(final.output.map((item) => item.type), ["reasoning", "message"]);
        assert.equal(final.output_text, "Done thinking.");
        const read = await openai.responses.retrieve(final.id);
        // The stream helper adds `parsed` fields of its own to what it read.
        const unparsed = JSON.stringify(
          final.output,
          (key, value) => key === "parsed" ? undefined : value,
        );
        assert.deepEqual(read.output, JSON.parse(unparsed));
      });

      await t.step("a failed job is response.failed in a stream, a 502 without", async () => {
        const stream = await openai.responses.create({
          model: "test-text-model",
          input: "fail",
          stream: true,
        });
        const events = [];
        for await (const event of stream) events.push(event);
        const last = events.at(-1)!;
        assert.ok(last.type === "response.failed", last.type);
        assert.equal(last.response.status, "failed");
        assert.equal(last.response.error?.code, "job_failed" as never);
        assert.match(last.response.error!.message, /Job failed/);
        await assert.rejects(
          () => openai.responses.create({ model: "test-text-model", input: "fail" }),
          (err: unknown) => err instanceof OpenAI.APIError && err.status === 502,
        );
      });

      await t.step("an output without its call is refused before anything runs", async () => {
        const before = gateway.vllm.requests.length;
        await assert.rejects(
          () =>
            openai.responses.create({
              input: [{ type: "function_call_output", call_id: "call_nowhere", output: "x" }],
            }),
          (err: unknown) =>
            err instanceof OpenAI.BadRequestError && err.param === "input[0].call_id",
        );
        assert.equal(gateway.vllm.requests.length, before);
      });
    } finally {
      await http.stop();
    }
  },
);
backendTest(
  "refusals are in OpenAI's shape, name the field, and store and queue nothing",
  async (t, start) => {
    const gateway = await start();
    const post = (body: unknown, headers: Record<string, string> = {}) =>
      gateway.app.request("/v1/responses", {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify(body),
      });
    const refused = async (body: unknown, status: number, param: string) => {
      const res = await post(body);
      const error = (await res.json()).error;
      assert.equal(res.status, status, JSON.stringify(error));
      assert.equal(error.param, param, JSON.stringify(error));
      assert.equal(typeof error.message, "string");
      assert.equal(error.type, "invalid_request_error");
      return error;
    };
    await t.step("each refusal names its field", async () => {
      await refused({ input: "Hi", tools: [{ type: "web_search_preview" }] }, 400, "tools[0].type");
      await refused({ input: "Hi", background: true }, 400, "background");
      await refused({ input: "Hi", reasoning: { effort: "low" }, seed: 1 }, 400, "seed");
      await refused(
        { input: [{ role: "user", content: [{ type: "input_file" }] }] },
        400,
        "input[0].content[0].type",
      );
      await refused({ model: "no-such-model", input: "Hi" }, 404, "model");
      await refused(
        { input: "Hi", previous_response_id: "resp_nope" },
        404,
        "previous_response_id",
      );
      const onOllama = await post({
        model: "test-vision-model",
        input: "Hi",
        tools: [WEATHER],
        tool_choice: "required",
        parallel_tool_calls: false,
        reasoning: { effort: "minimal" },
      });
      assert.equal(onOllama.status, 400);
      const details = (await onOllama.json()).error.details as { param: string }[];
      assert.deepEqual(details.map((d) => d.param), ["tool_choice", "reasoning.effort"]);
      const missing = `resp_${crypto.randomUUID()}`;
      await refused({ input: "Hi", previous_response_id: missing }, 404, "previous_response_id");
      const res = await gateway.app.request(`/v1/responses/${missing}`);
      assert.equal(res.status, 404);
      assert.equal((await res.json()).error.param, "response_id");
    });
    await t.step("nothing was stored or queued", async () => {
      assert.deepEqual(await gateway.jobRecords(), []);
      await gateway.depthBecomes("default", { waiting: 0, in_flight: 0, dead: 0 });
    });
    await t.step("an Idempotency-Key repeat makes one job", async () => {
      await gateway.startWorker();
      const body = { model: "test-text-model", input: "Once only" };
      const headers = { "idempotency-key": "responses-key-1" };
      const once = await post(body, headers);
      assert.equal(once.status, 200, await once.clone().text());
      const again = await post(body, headers);
      assert.equal(again.status, 200);
      assert.equal(again.headers.get("idempotent-replayed"), "true");
      assert.equal((await again.json()).id, (await once.json()).id);
      assert.equal((await gateway.jobRecords()).length, 1);
    });
  },
);
