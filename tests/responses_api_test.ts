/**
 * The Responses API as the `openai` npm SDK sees it, over HTTP on 127.0.0.1:
 * responses made, streamed, chained with `previous_response_id`, read and
 * deleted, function calls and their outputs, conversations, and refusals in
 * OpenAI's shape that leave nothing behind.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { backendTest, type TestGateway } from "./support/gateway.ts";
import { messageText } from "../lib/core/messages.ts";
import { pngDataUrl } from "./support/image_server.ts";
import type { RecordedRequest, StandInAnswer } from "./support/stand_in_llm.ts";

const KEY = "sk-test-key-one";
const OTHER_KEY = "sk-test-key-two";
const KEYS = { GATEWAY_API_KEYS: `${KEY},${OTHER_KEY}` };

/** Serves the gateway's app on a free loopback port. */
function serve(gateway: TestGateway) {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    gateway.app.fetch,
  );
  return { base: `http://127.0.0.1:${server.addr.port}`, stop: () => server.shutdown() };
}

function client(base: string, apiKey = KEY) {
  return new OpenAI({ baseURL: `${base}/v1`, apiKey, maxRetries: 0, timeout: 60_000 });
}

/** What the stand-in was last sent, as role and text. */
function lastChat(gateway: TestGateway): string[] {
  return gateway.vllm.requests.at(-1)!.messages.map((m) => `${m.role}: ${messageText(m)}`);
}

/** A response's `store`, which the SDK's type leaves out. */
function stored(response: OpenAI.Responses.Response): unknown {
  return (response as unknown as { store?: unknown }).store;
}

/** Echoes the last message, in pieces with pauses between, so a stream has several deltas. */
function slowEcho(request: RecordedRequest): StandInAnswer {
  return { reply: `vllm says: ${messageText(request.messages.at(-1)!)}`, pauseMs: 30 };
}

backendTest(
  "the openai SDK makes, streams, chains, reads and deletes responses",
  async (t, start) => {
    const gateway = await start({ env: KEYS, vllmAnswer: slowEcho });
    await gateway.startWorker();
    const http = serve(gateway);
    const openai = client(http.base);
    let first!: OpenAI.Responses.Response;
    let second!: OpenAI.Responses.Response;
    try {
      await t.step("a response comes back whole, with usage", async () => {
        const response = first = await openai.responses.create({
          model: "test-text-model",
          instructions: "Be brief.",
          input: "My name is Ada",
          temperature: 0.2,
          max_output_tokens: 50,
          metadata: { session: "s1" },
        });
        assert.match(response.id, /^resp_[0-9a-f-]{36}$/);
        assert.equal(response.object, "response");
        assert.equal(response.status, "completed");
        assert.equal(response.output_text, "vllm says: My name is Ada");
        assert.equal(response.instructions, "Be brief.");
        assert.deepEqual(response.metadata, { session: "s1" });
        assert.equal(response.temperature, 0.2);
        assert.equal(response.max_output_tokens, 50);
        assert.equal(stored(response), true);
        const usage = response.usage!;
        assert.ok(usage.input_tokens > 0 && usage.output_tokens > 0);
        assert.equal(usage.total_tokens, usage.input_tokens + usage.output_tokens);
        assert.deepEqual(lastChat(gateway), ["system: Be brief.", "user: My name is Ada"]);
        const sent = gateway.vllm.requests.at(-1)!;
        assert.equal(sent.temperature, 0.2);
        assert.equal(sent.max_tokens, 50);
        const job = (await gateway.jobRecords()).find((j) => `resp_${j.job_id}` === response.id);
        assert.equal(job?.api, "responses");
      });

      await t.step("a streamed response arrives as the Responses event stream", async () => {
        const stream = await openai.responses.create({
          model: "test-text-model",
          input: "tell me a fairly long story about streams and rivers",
          stream: true,
        });
        const events = [];
        for await (const event of stream) events.push(event);
        const types = events.map((e) => e.type);
        assert.deepEqual(
          [...new Set(types)],
          [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
          ],
        );
        assert.deepEqual(events.map((e) => e.sequence_number), events.map((_, i) => i));
        const deltas = events.flatMap((e) =>
          e.type === "response.output_text.delta" ? [e.delta] : []
        );
        assert.ok(deltas.length > 1, `the text came in ${deltas.length} piece(s)`);
        const text = "vllm says: tell me a fairly long story about streams and rivers";
        assert.equal(deltas.join(""), text);
        const completed = events.at(-1)!;
        assert.ok(completed.type === "response.completed");
        assert.equal(completed.response.status, "completed");
        assert.ok(completed.response.usage!.output_tokens > 0);
        // The SDK's own accumulator checks every event against the ones before it.
        const helper = openai.responses.stream({ model: "test-text-model", input: "Hi again" });
        const final = await helper.finalResponse();
        assert.equal(final.output_text, "vllm says: Hi again");
      });

      await t.step(
        "previous_response_id carries the chain, not its instructions",
        async () => {
          const response = second = await openai.responses.create({
            model: "test-text-model",
            previous_response_id: first.id,
            input: [{ role: "user", content: [{ type: "input_text", text: "What is my name?" }] }],
          });
          assert.equal(response.previous_response_id, first.id);
          assert.deepEqual(lastChat(gateway), [
            "user: My name is Ada",
            "assistant: vllm says: My name is Ada",
            "user: What is my name?",
          ]);
          const third = await openai.responses.create({
            model: "test-text-model",
            previous_response_id: response.id,
            instructions: "Answer in French.",
            input: "And again?",
            stream: true,
          });
          for await (const _event of third);
          assert.deepEqual(lastChat(gateway), [
            "system: Answer in French.",
            "user: My name is Ada",
            "assistant: vllm says: My name is Ada",
            "user: What is my name?",
            "assistant: vllm says: What is my name?",
            "user: And again?",
          ]);
        },
      );

      await t.step("responses.retrieve reads a stored response as it was answered", async () => {
        const read = await openai.responses.retrieve(second.id);
        for (const field of ["id", "status", "output", "usage", "previous_response_id", "model"]) {
          assert.deepEqual(
            read[field as keyof typeof read],
            second[field as keyof typeof second],
            field,
          );
        }
        assert.equal(read.output_text, "vllm says: What is my name?");
        assert.equal((await openai.responses.retrieve(first.id)).instructions, "Be brief.");
      });

      await t.step(
        "an item_reference names an earlier output item, as the AI SDK sends it",
        async () => {
          const reply = second.output[0];
          assert.ok(reply.type === "message");
          const input: OpenAI.Responses.ResponseInput = [
            { role: "user", content: "What is my name?" },
            { type: "item_reference", id: reply.id },
            { role: "user", content: "Sure?" },
          ];
          await openai.responses.create({ model: "test-text-model", input, store: false });
          assert.deepEqual(lastChat(gateway), [
            "user: What is my name?",
            "assistant: vllm says: What is my name?",
            "user: Sure?",
          ]);
          await assert.rejects(
            () => client(http.base, OTHER_KEY).responses.create({ input }),
            (err: unknown) => err instanceof OpenAI.NotFoundError && err.param === "input[1].id",
          );
        },
      );

      await t.step("another key's response reads as missing", async () => {
        const other = client(http.base, OTHER_KEY);
        await assert.rejects(() => other.responses.retrieve(first.id), OpenAI.NotFoundError);
        await assert.rejects(() => other.responses.delete(first.id), OpenAI.NotFoundError);
        await assert.rejects(
          () => other.responses.create({ input: "Hi", previous_response_id: first.id }),
          (err: unknown) =>
            err instanceof OpenAI.NotFoundError && err.param === "previous_response_id",
        );
      });

      await t.step("store: false keeps nothing to read or continue", async () => {
        const response = await openai.responses.create({
          model: "test-text-model",
          input: "Forget me",
          store: false,
        });
        assert.equal(response.output_text, "vllm says: Forget me");
        assert.equal(stored(response), false);
        await assert.rejects(() => openai.responses.retrieve(response.id), OpenAI.NotFoundError);
        await assert.rejects(
          () => openai.responses.create({ input: "Hi", previous_response_id: response.id }),
          OpenAI.NotFoundError,
        );
      });

      await t.step("a chain too long for a job record goes through the blob store", async () => {
        const long = (word: string) => `${word} `.repeat(3_000).trim();
        const tools = Array.from({ length: 6 }, (_, i) => ({
          type: "function" as const,
          name: `tool_${i}`,
          description: long("describes"),
          parameters: { type: "object", properties: {} },
          strict: false,
        }));
        const big = await openai.responses.create({
          model: "test-text-model",
          input: [
            { role: "user", content: long("question") },
            { role: "assistant", content: long("answer") },
            { role: "user", content: "short" },
          ],
          tools,
        });
        const next = await openai.responses.create({
          model: "test-text-model",
          previous_response_id: big.id,
          input: "and then?",
        });
        assert.deepEqual(lastChat(gateway).map((line) => line.slice(0, 20)), [
          "user: question quest",
          "assistant: answer an",
          "user: short",
          "assistant: vllm says",
          "user: and then?",
        ]);
        const jobs = await gateway.jobRecords();
        for (const response of [big, next]) {
          const job = jobs.find((j) => `resp_${j.job_id}` === response.id)!;
          assert.ok(job.context_ref && !job.context, "the chat went to the blob store");
        }
        const read = await openai.responses.retrieve(big.id);
        assert.deepEqual(
          read.tools.map((tool) => tool.type === "function" && tool.name),
          tools.map((tool) => tool.name),
        );
      });

      await t.step("an input_image goes to a vision model", async () => {
        const response = await openai.responses.create({
          model: "test-vision-model",
          input: [{
            role: "user",
            content: [
              { type: "input_text", text: "What is it?" },
              { type: "input_image", image_url: pngDataUrl(), detail: "auto" },
            ],
          }],
        });
        assert.equal(response.output_text, "ollama says: What is it?");
        assert.deepEqual(gateway.ollama.requests.at(-1)!.messages[0].content, [
          { type: "text", text: "What is it?" },
          { type: "image_url", image_url: { url: pngDataUrl() } },
        ]);
      });

      await t.step("responses.delete removes the record; later reads are 404", async () => {
        const jobId = first.id.slice("resp_".length);
        const res = await fetch(`${http.base}/v1/responses/${first.id}`, {
          method: "DELETE",
          headers: { authorization: `Bearer ${KEY}` },
        });
        assert.equal(res.status, 200);
        assert.deepEqual(await res.json(), { id: first.id, object: "response", deleted: true });
        assert.equal(await gateway.services.store.getJob(jobId), undefined);
        await assert.rejects(() => openai.responses.retrieve(first.id), OpenAI.NotFoundError);
        await assert.rejects(() => openai.responses.delete(first.id), OpenAI.NotFoundError);
        // The chain after it keeps its own copy of the history.
        const read = await openai.responses.retrieve(second.id);
        assert.equal(read.status, "completed");
        await openai.responses.delete(second.id);
        await assert.rejects(() => openai.responses.retrieve(second.id), OpenAI.NotFoundError);
      });
    } finally {
      await http.stop();
    }
  },
);

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
  "conversation keeps the history in a gateway conversation",
  async (_t, start) => {
    const gateway = await start();
    await gateway.startWorker();
    const http = serve(gateway);
    const openai = client(http.base);
    try {
      const first = await openai.responses.create({
        model: "test-text-model",
        conversation: "trip",
        instructions: "Be kind.",
        input: "first",
      });
      assert.deepEqual(first.conversation, { id: "trip" });
      await openai.responses.create({
        model: "test-text-model",
        conversation: { id: "trip" },
        input: "second",
      });
      assert.deepEqual(lastChat(gateway), [
        "user: first",
        "assistant: vllm says: first",
        "user: second",
      ]);
      const stored = await (await gateway.app.request("/conversation?conversation_id=trip")).json();
      assert.deepEqual(stored.messages.map((m: { content: string }) => m.content), [
        "first",
        "vllm says: first",
        "second",
        "vllm says: second",
      ]);
      await assert.rejects(
        () => openai.responses.create({ input: "third", previous_response_id: first.id }),
        (err: unknown) =>
          err instanceof OpenAI.BadRequestError && err.param === "previous_response_id",
      );
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
