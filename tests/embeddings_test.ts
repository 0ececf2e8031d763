/**
 * `POST /v1/embeddings` through the queue, as the real `openai` npm SDK sees
 * it over HTTP on 127.0.0.1: a vLLM stand-in serving an embedding model that
 * configuration marks (`VLLM_MODELS=…=embedding`, since vLLM's list cannot
 * say), and an Ollama stand-in whose `/api/show` says "embedding".
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import OpenAI from "openai";
import { EMBEDDING_MODELS } from "./support/embedding_models.ts";
import { backendTest, type TestGateway } from "./support/gateway.ts";
import { standInVector } from "./support/stand_in_llm.ts";
import { eventually } from "./support/wait.ts";

/** Serves the gateway's app on a free loopback port. */
function serve(gateway: TestGateway) {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    gateway.app.fetch,
  );
  return { base: `http://127.0.0.1:${server.addr.port}`, stop: () => server.shutdown() };
}

/** The float32 values of a vector, as a float32 store and OpenAI's base64 carry them. */
function float32(values: ArrayLike<number>): number[] {
  return Array.from(values, Math.fround);
}

backendTest(
  "the openai SDK embeds text through the queue: one string, a batch in order, base64 and float, dimensions",
  async (t, start) => {
    const gateway = await start(EMBEDDING_MODELS);
    await gateway.startWorker();
    const http = serve(gateway);
    const openai = new OpenAI({
      baseURL: `${http.base}/v1`,
      apiKey: "unused",
      maxRetries: 0,
      timeout: 60_000,
    });
    try {
      await t.step("/v1/models lists the embedding models and says what they do", async () => {
        await eventually(async () => {
          const body = await (await fetch(`${http.base}/v1/models`)).json();
          return body.data.length === 4;
        }, "both workers' backends listed");
        const models = [];
        for await (const model of openai.models.list()) models.push(model);
        assert.deepEqual(
          models.map((m) => [m.id, m.owned_by, (m as { capabilities?: string[] }).capabilities]),
          [
            ["test-text-model", "vllm", ["completion"]],
            ["test-embed-vllm", "vllm", ["embedding"]],
            ["test-vision-model", "ollama", ["completion", "vision"]],
            ["nomic-embed-text:latest", "ollama", ["embedding"]],
          ],
        );
      });

      await t.step(
        "a string comes back as one vector: base64 on the wire, decoded by the SDK",
        async () => {
          const answer = await openai.embeddings.create({
            model: "test-embed-vllm",
            input: "hello embedding world",
          });
          assert.equal(answer.object, "list");
          assert.equal(answer.model, "test-embed-vllm");
          assert.equal(answer.data.length, 1);
          assert.equal(answer.data[0].index, 0);
          assert.deepEqual(answer.data[0].embedding, standInVector("hello embedding world", 256));
          assert.deepEqual(answer.usage, { prompt_tokens: 3, total_tokens: 3 });
          const sent = gateway.vllm.embeddingRequests.at(-1)!;
          assert.deepEqual(sent, { input: "hello embedding world", model: "test-embed-vllm" });
          const [job] = (await gateway.jobRecords()).filter((j) => j.api === "embeddings");
          assert.equal(job.mode, "stateless");
          assert.equal(job.status, "succeeded");
          assert.equal(typeof job.embeddings?.data, "string", "one vector stays in the record");
          assert.equal(job.embeddings?.ref, undefined);
        },
      );

      await t.step(
        "an array's vectors come back in its order, as floats when asked, from Ollama",
        async () => {
          const inputs = ["first text", "second, a little longer, text", "third"];
          const answer = await openai.embeddings.create({
            // Ollama's `:latest` without its tag, as Ollama takes it.
            model: "nomic-embed-text",
            input: inputs,
            encoding_format: "float",
          });
          assert.deepEqual(answer.data.map((d) => d.index), [0, 1, 2]);
          answer.data.forEach((d, i) => {
            assert.ok(Array.isArray(d.embedding));
            assert.deepEqual(float32(d.embedding), standInVector(inputs[i], 8));
          });
          assert.equal(answer.model, "nomic-embed-text");
          const sent = gateway.ollama.embeddingRequests.at(-1)!;
          assert.equal(sent.model, "nomic-embed-text:latest", "the name Ollama lists");
          assert.deepEqual(sent.input, inputs);
        },
      );

      await t.step(
        "base64, when asked for, is little-endian float32 as OpenAI sends it",
        async () => {
          const answer = await openai.embeddings.create({
            model: "nomic-embed-text:latest",
            input: ["alpha", "beta"],
            encoding_format: "base64",
          });
          answer.data.forEach((d, i) => {
            assert.equal(typeof d.embedding, "string");
            const bytes = Buffer.from(d.embedding as unknown as string, "base64");
            const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
            const floats = Array.from(
              { length: bytes.length / 4 },
              (_, j) => view.getFloat32(j * 4, true),
            );
            assert.deepEqual(floats, standInVector(["alpha", "beta"][i], 8));
          });
        },
      );

      await t.step("dimensions go to the backend, which shortens the vectors", async () => {
        const answer = await openai.embeddings.create({
          model: "test-embed-vllm",
          input: "short me",
          dimensions: 4,
        });
        assert.deepEqual(answer.data[0].embedding, standInVector("short me", 256, 4));
        assert.equal(gateway.vllm.embeddingRequests.at(-1)!.dimensions, 4);
      });

      await t.step("token ids go to vLLM as they are", async () => {
        const answer = await openai.embeddings.create({
          model: "test-embed-vllm",
          input: [[101, 2023, 102], [7, 8]],
        });
        assert.deepEqual(answer.data[0].embedding, standInVector("tokens:101,2023,102", 256));
        assert.deepEqual(answer.data[1].embedding, standInVector("tokens:7,8", 256));
        assert.deepEqual(gateway.vllm.embeddingRequests.at(-1)!.input, [[101, 2023, 102], [7, 8]]);
      });

      await t.step(
        "a batch of 100 is one job and one backend call, its vectors and input kept outside the record",
        async () => {
          const inputs = Array.from(
            { length: 100 },
            (_, i) => `document ${i}: ${"a paragraph of some length about embeddings. ".repeat(3)}`,
          );
          const before = (await gateway.jobRecords()).length;
          const calls = gateway.vllm.embeddingRequests.length;
          const answer = await openai.embeddings.create({
            model: "test-embed-vllm",
            input: inputs,
          });
          assert.equal(answer.data.length, 100);
          answer.data.forEach((d, i) => {
            assert.equal(d.index, i);
            assert.deepEqual(d.embedding, standInVector(inputs[i], 256));
          });
          assert.equal(gateway.vllm.embeddingRequests.length, calls + 1, "one backend call");
          const records = await gateway.jobRecords();
          assert.equal(records.length, before + 1, "one job");
          const job = records.find((j) => j.embeddings?.count === 100)!;
          assert.equal(job.embeddings!.dimensions, 256);
          assert.equal(job.embeddings!.data, undefined, "100 × 256 floats are not in the record");
          assert.match(job.embeddings!.ref ?? "", /^gateway-blob:_\/[0-9a-f]{64}\.bin$/);
          assert.equal(job.params, undefined, "the 15 KB input is in the blob store too");
          assert.match(job.params_ref ?? "", /^gateway-blob:/);
          const view = await (await fetch(`${http.base}/jobs/${job.job_id}`)).json();
          assert.deepEqual(view.embeddings, { count: 100, dimensions: 256 }, "no vectors shown");
        },
      );

      await t.step("a repeat with the same Idempotency-Key makes no second job", async () => {
        const body = { model: "test-embed-vllm", input: ["once", "only"] };
        const first = await openai.embeddings.create(body, {
          headers: { "Idempotency-Key": "embed-key-1" },
        })
          .withResponse();
        const before = (await gateway.jobRecords()).length;
        const calls = gateway.vllm.embeddingRequests.length;
        const again = await openai.embeddings.create(body, {
          headers: { "Idempotency-Key": "embed-key-1" },
        })
          .withResponse();
        assert.equal(first.response.headers.get("idempotent-replayed"), null);
        assert.equal(again.response.headers.get("idempotent-replayed"), "true");
        assert.deepEqual(again.data.data, first.data.data);
        assert.equal((await gateway.jobRecords()).length, before, "no new job");
        assert.equal(gateway.vllm.embeddingRequests.length, calls, "no new backend call");
      });

      await t.step(
        "a chat sent to an embedding model is refused, naming a chat model",
        async () => {
          const refused = await openai.chat.completions.create({
            model: "nomic-embed-text:latest",
            messages: [{ role: "user", content: "hi" }],
          }).catch((err) => err);
          assert.ok(refused instanceof OpenAI.BadRequestError, String(refused));
          assert.equal(refused.code, "model_not_for_chat");
          assert.equal(refused.param, "model");
          assert.match(refused.message, /"test-text-model" \(backend "vllm"\) chats/);
        },
      );

      await t.step("/metrics counts the jobs by the API that made them", async () => {
        let seen = "";
        await eventually(async () => {
          const text = await (await fetch(`${http.base}/metrics`)).text();
          seen = text.split("\n").filter((l) => l.startsWith("gateway_worker_api_runs_total"))
            .join("\n");
          const runs = [...text.matchAll(
            /^gateway_worker_api_runs_total\{worker="\w+",api="(\w+)",outcome="succeeded"\} (\d+)$/gm,
          )].filter((m) => m[1] === "embeddings");
          return runs.reduce((sum, m) => sum + Number(m[2]), 0) === 7;
        }, "the worker's heartbeat to publish 7 embeddings jobs").catch((err) => {
          throw new Error(`${err.message}; it published:\n${seen}`);
        });
      });
    } finally {
      await http.stop();
    }
  },
);
