/**
 * What `POST /v1/embeddings` refuses: each refusal is a 400 (or a 404 for an
 * unknown model) in OpenAI's shape that names the field, and nothing is
 * stored, queued or sent to a backend.
 */
import assert from "node:assert/strict";
import { backendTest } from "./support/gateway.ts";
import { eventually } from "./support/wait.ts";
import { EMBEDDING_MODELS } from "./support/embedding_models.ts";

/** A refusal as the client reads it. */
interface Refusal {
  status: number;
  error: { message: string; type: string; code?: string; param?: string };
}

backendTest(
  "embeddings requests that cannot be served are refused, naming the field",
  async (t, start) => {
    const gateway = await start(EMBEDDING_MODELS);
    await gateway.startWorker();
    const post = async (path: string, body: unknown): Promise<Refusal> => {
      const res = await gateway.app.request(path, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      return { status: res.status, error: (await res.json()).error };
    };
    const embed = (body: unknown) => post("/v1/embeddings", body);
    // Ollama's embedding model is known from its worker's report, not from configuration.
    await eventually(async () => {
      const res = await gateway.app.request("/v1/models");
      return (await res.json()).data.some((m: { id: string }) =>
        m.id === "nomic-embed-text:latest"
      );
    }, "the worker to report Ollama's models");

    const fieldCases: [string, unknown, string, RegExp][] = [
      ["no input", { model: "test-embed-vllm" }, "input", /is required/],
      ["an empty array", { model: "test-embed-vllm", input: [] }, "input", /at least one input/],
      [
        "an empty string",
        { model: "test-embed-vllm", input: ["a", ""] },
        "input[1]",
        /not be empty/,
      ],
      [
        "a number among strings",
        { model: "test-embed-vllm", input: ["a", 1] },
        "input[1]",
        /string/,
      ],
      [
        "a token id that is no integer",
        { model: "test-embed-vllm", input: [[1, 2.5]] },
        "input[0][1]",
        /token id/,
      ],
      [
        "an object",
        { model: "test-embed-vllm", input: { text: "a" } },
        "input",
        /must be a string/,
      ],
      [
        "more inputs than OpenAI takes",
        { model: "test-embed-vllm", input: Array.from({ length: 2049 }, () => "x") },
        "input",
        /at most 2048 inputs, got 2049/,
      ],
      [
        "more text than a request may hold",
        { model: "test-embed-vllm", input: ["word ".repeat(250_000)] },
        "input",
        /at most 1200000 bytes of text/,
      ],
      ["no model", { input: "a" }, "model", /is required/],
      [
        "an unknown encoding",
        { model: "test-embed-vllm", input: "a", encoding_format: "bytes" },
        "encoding_format",
        /"float" or "base64"/,
      ],
      [
        "no dimensions",
        { model: "test-embed-vllm", input: "a", dimensions: 0 },
        "dimensions",
        /at least 1/,
      ],
      [
        "token ids to Ollama, which embeds text only",
        { model: "nomic-embed-text:latest", input: [1, 2, 3] },
        "input",
        /must be text: Ollama does not embed token ids \(backend "ollama" is ollama\)/,
      ],
      [
        "a field Ollama would drop unread",
        { model: "nomic-embed-text:latest", input: "a", truncate: false },
        "truncate",
        /is not supported by Ollama/,
      ],
    ];
    for (const [what, body, param, message] of fieldCases) {
      await t.step(`${what} is a 400 naming ${param}`, async () => {
        const { status, error } = await embed(body);
        assert.equal(status, 400, JSON.stringify(error));
        assert.equal(error.type, "invalid_request_error");
        assert.equal(error.param, param);
        assert.match(error.message, message);
      });
    }

    await t.step("an unknown model is a 404 model_not_found", async () => {
      const { status, error } = await embed({ model: "no-such-model", input: "a" });
      assert.equal(status, 404);
      assert.equal(error.code, "model_not_found");
      assert.equal(error.param, "model");
    });

    await t.step("a chat model is refused for embeddings, naming one that embeds", async () => {
      const { status, error } = await embed({ model: "test-text-model", input: "a" });
      assert.equal(status, 400);
      assert.equal(error.code, "model_not_for_embeddings");
      assert.equal(error.param, "model");
      assert.match(error.message, /"test-embed-vllm" \(backend "vllm"\) does/);
      assert.match(error.message, /list it in VLLM_MODELS as test-text-model=embedding/);
    });

    await t.step("an embedding model is refused for a chat, naming one that chats", async () => {
      const { status, error } = await post("/v1/chat/completions", {
        model: "test-embed-vllm",
        messages: [{ role: "user", content: "hi" }],
      });
      assert.equal(status, 400);
      assert.equal(error.code, "model_not_for_chat");
      assert.match(
        error.message,
        /POST \/v1\/embeddings; "test-text-model" \(backend "vllm"\) chats/,
      );
    });

    await t.step("none of them stored, queued or sent anything", async () => {
      assert.deepEqual(await gateway.jobRecords(), []);
      await gateway.depthBecomes("default", { waiting: 0, in_flight: 0, dead: 0 });
      assert.equal(gateway.vllm.embeddingRequests.length, 0);
      assert.equal(gateway.ollama.embeddingRequests.length, 0);
      assert.equal(gateway.vllm.requests.length, 0);
    });
  },
);
