/**
 * The worker's embeddings call against stand-ins of vLLM and Ollama on
 * loopback, and how vectors are kept (little-endian float32) and given back
 * (numbers, or OpenAI's base64).
 */
import assert from "node:assert/strict";
import { backendsFromConfig } from "../lib/core/backends.ts";
import { loadConfig } from "../lib/core/config.ts";
import { bytesToVectors, fromBase64, vectorsToBytes } from "../lib/core/embeddings.ts";
import { embeddingList } from "../lib/http/embeddings_objects.ts";
import { createEmbeddings } from "../lib/worker/embeddings_client.ts";
import { BackendError } from "../lib/worker/llm_client.ts";
import { standInVector, startStandInLlm } from "./support/stand_in_llm.ts";

const EMBEDDER = { id: "embedder", capabilities: ["embedding"], dimensions: 6 };

function backendOf(server: { baseUrl: string; kind: string }) {
  return backendsFromConfig(loadConfig({
    LLM_BACKENDS: "b",
    LLM_B_KIND: server.kind,
    LLM_B_BASE_URL: server.baseUrl,
  }))[0];
}

Deno.test("vectors are kept as little-endian float32, one after another, and read back the same", () => {
  const vectors = [[1, -2, 0.1], [3.5, 0, -0.25]];
  const bytes = vectorsToBytes(vectors, 3);
  assert.deepEqual([...bytes.subarray(0, 4)], [0x00, 0x00, 0x80, 0x3f], "1.0, little-endian");
  const back = bytesToVectors(bytes, 2, 3).map((v) => [...v]);
  assert.deepEqual(back, vectors.map((v) => v.map(Math.fround)));
  assert.throws(() => bytesToVectors(bytes, 3, 3), RangeError);
});

Deno.test("embeddingList() gives each vector in order, as numbers that are its float32 or as base64", () => {
  const vectors = [standInVector("a", 5), standInVector("b", 5)];
  const bytes = vectorsToBytes(vectors, 5);
  const usage = { prompt_tokens: 2, completion_tokens: 0, total_tokens: 2 };
  const floats = embeddingList(bytes, { count: 2, dimensions: 5 }, {
    model: "m",
    encodingFormat: "float",
    usage,
  });
  assert.deepEqual(floats.usage, { prompt_tokens: 2, total_tokens: 2 });
  assert.deepEqual(floats.data.map((d) => [d.object, d.index]), [["embedding", 0], [
    "embedding",
    1,
  ]]);
  floats.data.forEach((d, i) => {
    const numbers = d.embedding as number[];
    assert.deepEqual(numbers.map(Math.fround), vectors[i]);
    assert.ok(numbers.every((x) => String(x).replace(/^-?0\./, "").length <= 12), String(numbers));
  });
  const base64 = embeddingList(bytes, { count: 2, dimensions: 5 }, {
    model: "m",
    encodingFormat: "base64",
  });
  base64.data.forEach((d, i) => {
    assert.deepEqual([...bytesToVectors(fromBase64(d.embedding as string), 1, 5)[0]], vectors[i]);
  });
});

Deno.test("createEmbeddings() asks a vLLM backend and returns its vectors in input order, whichever format it answers in", async () => {
  const vllm = startStandInLlm({ name: "v", kind: "vllm", models: [EMBEDDER] });
  try {
    const reply = await createEmbeddings(backendOf(vllm), {
      model: "embedder",
      params: { input: ["one two", "three"] },
      timeoutMs: 5_000,
    });
    assert.equal(reply.dimensions, 6);
    assert.deepEqual(reply.vectors, [standInVector("one two", 6), standInVector("three", 6)]);
    assert.equal(reply.promptTokens, 3);
    assert.deepEqual(vllm.embeddingRequests.at(-1), {
      input: ["one two", "three"],
      model: "embedder",
    });
    const base64 = await createEmbeddings(backendOf(vllm), {
      model: "embedder",
      params: { input: "x", encoding_format: "base64" },
      timeoutMs: 5_000,
    });
    assert.deepEqual(Array.from(base64.vectors[0]), standInVector("x", 6));
  } finally {
    await vllm.stop();
  }
});

Deno.test("createEmbeddings() puts an answer given out of order back in input order, and refuses one short of vectors", async () => {
  let answer: unknown;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => Response.json(answer),
  );
  const backend = backendOf({ baseUrl: `http://127.0.0.1:${server.addr.port}/v1`, kind: "openai" });
  const call = () =>
    createEmbeddings(backend, { model: "m", params: { input: ["a", "b"] }, timeoutMs: 5_000 });
  try {
    answer = {
      data: [{ index: 1, embedding: [0, 1] }, { index: 0, embedding: [1, 0] }],
      usage: { prompt_tokens: 2 },
    };
    assert.deepEqual((await call()).vectors, [[1, 0], [0, 1]]);
    answer = { data: [{ index: 0, embedding: [1, 0] }] };
    const short = await call().then(() => undefined, (err) => err);
    assert.ok(short instanceof BackendError);
    assert.equal(short.message, 'Backend "b" sent embeddings the gateway cannot read');
    assert.match(short.detail, /1 vectors for 2 inputs/);
    answer = { data: [{ index: 0, embedding: [1, 0] }, { index: 1, embedding: [1] }] };
    const uneven = await call().then(() => undefined, (err) => err);
    assert.match(uneven.detail, /vectors of different lengths/);
  } finally {
    await server.shutdown();
  }
});

Deno.test("createEmbeddings() reports what Ollama refuses as a backend error no retry can mend", async () => {
  const ollama = startStandInLlm({
    name: "o",
    kind: "ollama",
    models: [EMBEDDER, { id: "chatty", capabilities: ["completion"] }],
  });
  try {
    const backend = backendOf(ollama);
    const tokens = await createEmbeddings(backend, {
      model: "embedder",
      params: { input: [1, 2, 3] },
      timeoutMs: 5_000,
    }).then(() => undefined, (err) => err);
    assert.ok(tokens instanceof BackendError);
    assert.equal(tokens.status, 400);
    assert.equal(tokens.retryable, false);
    assert.equal(tokens.message, 'Backend "b" answered 400', "no address, no backend's words");
    assert.match(tokens.detail, /invalid input type/);
    const chat = await createEmbeddings(backend, {
      model: "chatty",
      params: { input: "hi" },
      timeoutMs: 5_000,
    }).then(() => undefined, (err) => err);
    assert.match(chat.detail, /"chatty" does not support embeddings/);
  } finally {
    await ollama.stop();
  }
});

Deno.test("createEmbeddings() names the variable to check when the backend cannot be reached", async () => {
  const server = startStandInLlm({ name: "v", kind: "vllm", models: [EMBEDDER] });
  const backend = backendOf(server);
  await server.stop();
  const err = await createEmbeddings(backend, {
    model: "embedder",
    params: { input: "x" },
    timeoutMs: 5_000,
  }).then(() => undefined, (err) => err);
  assert.ok(err instanceof BackendError);
  assert.equal(err.message, 'Cannot reach backend "b" (check LLM_B_BASE_URL on the worker)');
  assert.equal(err.retryable, true);
});
