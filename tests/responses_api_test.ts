/**
 * The Responses API as the `openai` npm SDK sees it, over HTTP on 127.0.0.1:
 * responses made, streamed, chained with `previous_response_id`, read and
 * deleted, and kept in a gateway conversation.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { backendTest } from "./support/gateway.ts";
import { messageText } from "../lib/core/messages.ts";
import { pngDataUrl } from "./support/image_server.ts";
import { client, KEY, KEYS, lastChat, OTHER_KEY, serve } from "./support/responses_client.ts";
import type { RecordedRequest, StandInAnswer } from "./support/stand_in_llm.ts";

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
