/** How a worker asks its backends what they serve, against stand-ins of vLLM and Ollama on loopback. */
import assert from "node:assert/strict";
import { backendsFromConfig, resolvedModelName, sameModel } from "../lib/core/backends.ts";
import { mayTakeImages, takesImages } from "../lib/core/catalogue.ts";
import { type Env, loadConfig } from "../lib/core/config.ts";
import { createLogger } from "../lib/core/log.ts";
import { checkBackend, ollamaRoot } from "../lib/worker/backend_models.ts";
import { ModelCatalogue } from "../lib/worker/model_catalogue.ts";
import { startBackendSwitch } from "./support/backend_switch.ts";
import { startStandInLlm } from "./support/stand_in_llm.ts";

function backend(env: Env) {
  return backendsFromConfig(loadConfig({ LLM_BACKENDS: "b", ...env }))[0];
}

const TIMEOUT = { timeoutMs: 5_000 };

Deno.test("checkBackend() lists a vLLM server's models from /v1/models", async () => {
  const vllm = startStandInLlm({ name: "v", kind: "vllm", models: [{ id: "m1" }, { id: "m2" }] });
  try {
    const report = await checkBackend(
      backend({ LLM_B_KIND: "vllm", LLM_B_BASE_URL: vllm.baseUrl, LLM_B_MODEL: "m2" }),
      TIMEOUT,
    );
    assert.equal(report.status, "up");
    assert.equal(report.kind, "vllm");
    assert.deepEqual(report.models.map((m) => [m.id, m.capabilities]), [
      ["m1", ["completion"]],
      ["m2", ["completion"]],
    ]);
    assert.equal(report.default_model, "m2", "the configured default, since it is served");
    assert.equal(typeof report.models[0].created, "number");
  } finally {
    await vllm.stop();
  }
});

Deno.test("checkBackend() reads Ollama's capabilities from /api/show and leaves out models that neither chat nor embed", async () => {
  const ollama = startStandInLlm({
    name: "o",
    kind: "ollama",
    models: [
      { id: "nomic-embed-text:latest", capabilities: ["embedding"] },
      { id: "llava:7b", capabilities: ["completion", "vision"] },
      { id: "x/flux2-klein:latest", capabilities: ["image"] },
      { id: "qwen2.5-coder:7b", capabilities: ["completion", "tools", "insert"] },
    ],
  });
  try {
    const report = await checkBackend(
      backend({ LLM_B_KIND: "ollama", LLM_B_BASE_URL: ollama.baseUrl }),
      TIMEOUT,
    );
    assert.equal(report.status, "up");
    assert.deepEqual(report.models.map((m) => [m.id, m.capabilities]), [
      ["nomic-embed-text:latest", ["embedding"]],
      ["llava:7b", ["completion", "vision"]],
      ["qwen2.5-coder:7b", ["completion", "tools", "insert"]],
    ]);
    assert.equal(
      report.default_model,
      "llava:7b",
      "with none configured, the first chat model served",
    );
    assert.deepEqual(ollama.shown.sort(), [
      "llava:7b",
      "nomic-embed-text:latest",
      "qwen2.5-coder:7b",
      "x/flux2-klein:latest",
    ]);
  } finally {
    await ollama.stop();
  }
});

Deno.test("checkBackend() takes models and capabilities from configuration when listed, and still checks the backend answers", async () => {
  const server = startStandInLlm({ name: "v", kind: "vllm", models: [{ id: "Qwen2-VL" }] });
  try {
    const report = await checkBackend(
      backend({
        LLM_B_KIND: "vllm",
        LLM_B_BASE_URL: server.baseUrl,
        LLM_B_MODELS: "bge-m3=embedding,Qwen2-VL=vision,gte-qwen2=embedding+completion",
      }),
      TIMEOUT,
    );
    assert.equal(report.status, "up");
    assert.deepEqual(report.models, [
      { id: "bge-m3", capabilities: ["embedding"] },
      { id: "Qwen2-VL", capabilities: ["completion", "vision"] },
      { id: "gte-qwen2", capabilities: ["embedding", "completion"] },
    ], "a model marked =embedding does not chat, unless marked so too");
    assert.equal(report.default_model, "Qwen2-VL", "the first that chats");
    assert.equal(server.listings, 1);
  } finally {
    await server.stop();
  }
});

Deno.test("checkBackend() reports a backend that is down with the reason, no address, and its last models", async () => {
  const server = startStandInLlm({ name: "v", kind: "vllm", models: [{ id: "m1" }] });
  const config = backend({ LLM_B_KIND: "vllm", LLM_B_BASE_URL: server.baseUrl });
  const previous = await checkBackend(config, TIMEOUT);
  await server.stop();
  const report = await checkBackend(config, { ...TIMEOUT, previous });
  assert.equal(report.status, "down");
  assert.match(report.error ?? "", /^Cannot reach backend "b"/);
  assert.ok(!report.error?.includes("127.0.0.1"), report.error);
  assert.deepEqual(report.models.map((m) => m.id), ["m1"], "what it served last time");
});

Deno.test("checkBackend() sends the backend's API key, and a refused key reports it down", async () => {
  const server = startStandInLlm({ name: "v", kind: "vllm", models: [{ id: "m1" }], apiKey: "k1" });
  try {
    const withKey = backend({
      LLM_B_KIND: "vllm",
      LLM_B_BASE_URL: server.baseUrl,
      LLM_B_API_KEY: "k1",
    });
    assert.equal((await checkBackend(withKey, TIMEOUT)).status, "up");
    const without = await checkBackend(
      backend({ LLM_B_KIND: "vllm", LLM_B_BASE_URL: server.baseUrl }),
      TIMEOUT,
    );
    assert.equal(without.status, "down");
    assert.equal(without.error, 'Backend "b" answered 401 to v1/models');
  } finally {
    await server.stop();
  }
});

Deno.test("ollamaRoot() finds the native API beside the OpenAI-compatible /v1", () => {
  assert.equal(ollamaRoot("http://localhost:11434/v1"), "http://localhost:11434");
  assert.equal(ollamaRoot("http://mac.lan:11434/v1/"), "http://mac.lan:11434");
  assert.equal(ollamaRoot("https://proxy.example/ollama"), "https://proxy.example/ollama");
});

Deno.test("checkBackend() takes a configured Ollama name without a tag as the :latest Ollama lists", async () => {
  const ollama = startStandInLlm({
    name: "o",
    kind: "ollama",
    models: [
      { id: "qwen2.5:latest", capabilities: ["completion"] },
      { id: "llava:latest", capabilities: ["completion", "vision"] },
    ],
  });
  try {
    const config = backend({
      LLM_B_KIND: "ollama",
      LLM_B_BASE_URL: ollama.baseUrl,
      LLM_B_MODEL: "llava",
    });
    const report = await checkBackend(config, TIMEOUT);
    assert.equal(
      report.default_model,
      "llava:latest",
      "the configured default, as Ollama names it",
    );
    const lines: string[] = [];
    const catalogue = new ModelCatalogue([config], {
      logger: createLogger({ write: (line) => lines.push(line) }),
      timeoutMs: 5_000,
    });
    await catalogue.refresh();
    assert.ok(!lines.some((l) => l.includes("is not served")), lines.join("\n"));
    assert.equal(catalogue.model("b", "llava")?.id, "llava:latest");
    assert.equal(catalogue.model("b", "llava:7b"), undefined, "another tag is another model");
  } finally {
    await ollama.stop();
  }
});

Deno.test("checkBackend() lists an Ollama model whose /api/show fails with its capabilities unknown", async () => {
  const ollama = startStandInLlm({
    name: "o",
    kind: "ollama",
    models: [{ id: "llava:latest", capabilities: ["completion", "vision"] }],
  });
  const show = startBackendSwitch(ollama.baseUrl);
  show.failing.add("/api/show");
  try {
    const report = await checkBackend(
      backend({ LLM_B_KIND: "ollama", LLM_B_BASE_URL: show.baseUrl }),
      TIMEOUT,
    );
    assert.equal(report.status, "up");
    assert.deepEqual(report.models.map((m) => ({ ...m, created: undefined })), [
      {
        id: "llava:latest",
        capabilities: ["completion"],
        capabilities_unknown: true,
        created: undefined,
      },
    ]);
    assert.equal(takesImages(report.models[0]), false, "not known to see");
    assert.equal(mayTakeImages(report.models[0]), true, "but images may go to it");
  } finally {
    await show.stop();
    await ollama.stop();
  }
});

Deno.test("resolvedModelName() gives an Ollama name without a tag its :latest, and leaves other kinds alone", () => {
  const ollama = { kind: "ollama" } as const;
  assert.equal(resolvedModelName(ollama, "llava"), "llava:latest");
  assert.equal(resolvedModelName(ollama, "llava:7b"), "llava:7b");
  assert.equal(
    resolvedModelName(ollama, "hf.co/bartowski/Llama-3.2-1B-GGUF"),
    "hf.co/bartowski/Llama-3.2-1B-GGUF:latest",
  );
  assert.equal(
    resolvedModelName(ollama, "registry.lan:5000/team/llava"),
    "registry.lan:5000/team/llava:latest",
  );
  assert.equal(resolvedModelName({ kind: "vllm" }, "Qwen/Qwen2.5-7B"), "Qwen/Qwen2.5-7B");
  assert.ok(sameModel(ollama, "llava", "llava:latest"));
  assert.ok(!sameModel(ollama, "llava", "llava:7b"));
  assert.ok(!sameModel({ kind: "openai" }, "llava", "llava:latest"));
});
