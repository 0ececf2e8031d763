/**
 * How the front door picks a backend and model from the workers' records,
 * in-process on hand-made records: which source wins for each backend, which
 * model is the default, and the errors a client gets.
 */
import assert from "node:assert/strict";
import { backendsFromConfig } from "../lib/core/backends.ts";
import type { BackendReport, WorkerRecord } from "../lib/core/catalogue.ts";
import { loadConfig } from "../lib/core/config.ts";
import { ApiError } from "../lib/http/errors.ts";
import { ModelDirectory } from "../lib/http/model_directory.ts";

const NOW = Date.parse("2026-11-28T12:00:00Z");

const backends = backendsFromConfig(loadConfig({
  LLM_BACKENDS: "gpu,mac",
  LLM_GPU_KIND: "vllm",
  LLM_GPU_MODEL: "qwen-7b",
  LLM_MAC_KIND: "ollama",
}));

function report(name: string, models: [string, ...string[]][], extra: Partial<BackendReport> = {}) {
  return {
    name,
    kind: name === "mac" ? "ollama" : "vllm",
    status: "up",
    checked_at: new Date(NOW).toISOString(),
    default_model: models[0]?.[0],
    models: models.map(([id, ...capabilities]) => ({ id, capabilities })),
    ...extra,
  } as BackendReport;
}

function worker(
  id: string,
  reports: BackendReport[],
  options: { ageMs?: number; live?: boolean } = {},
) {
  const seen = NOW - (options.ageMs ?? 1000);
  return {
    worker_id: id,
    seen_at: new Date(seen).toISOString(),
    live_until: options.live === false ? seen : seen + 60_000,
    backends: reports,
  } satisfies WorkerRecord;
}

function apiError(fn: () => unknown): ApiError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ApiError, String(err));
    return err;
  }
  throw new Error("expected an ApiError");
}

const MAC = report("mac", [["llama3.2:latest", "completion"], [
  "llava:7b",
  "completion",
  "vision",
]]);

Deno.test("ModelDirectory.route() sends a named model to the backend a live worker says serves it", () => {
  const directory = new ModelDirectory(backends, [
    worker("w-gpu", [report("gpu", [["qwen-7b", "completion"]])]),
    worker("w-mac", [MAC]),
  ], { now: NOW });
  const target = directory.route({ model: "llava:7b", images: true });
  assert.deepEqual([target.backend.name, target.model], ["mac", "llava:7b"]);
  assert.equal(directory.source, "workers");
});

Deno.test("ModelDirectory.route() prefers a backend that is up when two serve the model", () => {
  const directory = new ModelDirectory(backends, [
    worker("w-gpu", [report("gpu", [["shared", "completion"]], { status: "down", error: "x" })]),
    worker("w-mac", [report("mac", [["shared", "completion"]])]),
  ], { now: NOW });
  assert.equal(directory.route({ model: "shared", images: false }).backend.name, "mac");
  assert.deepEqual(directory.models().map((m) => [m.id, m.backend.name]), [["shared", "mac"]]);
});

Deno.test("ModelDirectory.route() routes without a model by content: text to the first backend, images to the first vision model", () => {
  const directory = new ModelDirectory(backends, [
    worker("w", [report("gpu", [["qwen-7b", "completion"]]), MAC]),
  ], { now: NOW });
  const text = directory.route({ images: false });
  assert.deepEqual([text.backend.name, text.model], ["gpu", "qwen-7b"]);
  const picture = directory.route({ images: true });
  assert.deepEqual([picture.backend.name, picture.model], ["mac", "llava:7b"]);
});

Deno.test("ModelDirectory.route() uses the workers' default model when the configured one is not served", () => {
  const directory = new ModelDirectory(backends, [
    worker("w", [report("gpu", [["llama-70b", "completion"]], { default_model: "llama-70b" })]),
  ], { now: NOW });
  assert.equal(directory.route({ images: false }).model, "llama-70b");
});

Deno.test("ModelDirectory.route() routes to a stopped worker's backend by its last record, and /v1/models leaves it out", () => {
  const directory = new ModelDirectory(backends, [
    worker("w-gpu", [report("gpu", [["qwen-7b", "completion"]])]),
    worker("w-mac", [MAC], { live: false, ageMs: 3_600_000 }),
  ], { now: NOW });
  assert.equal(directory.route({ model: "llava:7b", images: true }).backend.name, "mac");
  assert.deepEqual(directory.models().map((m) => m.id), ["qwen-7b"]);
  assert.equal(directory.lastSeen(backends[1])?.getTime(), NOW - 3_600_000);
});

Deno.test("ModelDirectory falls back to the configured models when no worker is live", () => {
  const directory = new ModelDirectory(backends, [], { now: NOW });
  assert.equal(directory.source, "configured_defaults");
  assert.deepEqual(directory.models().map((m) => [m.id, m.backend.name]), [["qwen-7b", "gpu"]]);
  assert.equal(directory.route({ model: "qwen-7b", images: false }).backend.name, "gpu");
  const noDefault = apiError(() =>
    new ModelDirectory([backends[1]], [], { now: NOW }).route({ images: false })
  );
  assert.equal(noDefault.status, 503);
  assert.match(noDefault.message, /set LLM_MAC_MODEL or start its worker/);
});

Deno.test("ModelDirectory.route() answers an unknown model with a 404 model_not_found that names backends down", () => {
  const directory = new ModelDirectory(backends, [
    worker("w", [
      report("gpu", [["qwen-7b", "completion"]]),
      report("mac", [], { status: "down", error: 'Cannot reach backend "mac"' }),
    ]),
  ], { now: NOW });
  const err = apiError(() => directory.route({ model: "llava:7b", images: false }));
  assert.equal(err.status, 404);
  assert.equal(err.code, "model_not_found");
  assert.equal(err.param, "model");
  assert.match(err.message, /down, models unknown: backend "mac"/);
});

Deno.test("ModelDirectory.route() refuses images for a model without vision, naming one with it", () => {
  const directory = new ModelDirectory(backends, [worker("w", [MAC])], { now: NOW });
  const err = apiError(() => directory.route({ model: "llama3.2:latest", images: true }));
  assert.equal(err.status, 400);
  assert.equal(err.code, "model_without_vision");
  assert.match(err.message, /"llava:7b" \(backend "mac"\) does/);
  const none = new ModelDirectory(backends, [
    worker("w", [report("gpu", [["qwen-7b", "completion"]])]),
  ], { now: NOW });
  const blind = apiError(() => none.route({ images: true }));
  assert.equal(blind.status, 400);
  assert.match(blind.message, /No model takes images; no backend serves a model that does/);
});

Deno.test("ModelDirectory ignores workers that serve only backends the front door does not know", () => {
  const directory = new ModelDirectory(backends, [
    worker("w-other", [report("elsewhere", [["m", "completion"]])]),
  ], { now: NOW });
  assert.equal(directory.source, "configured_defaults");
  assert.deepEqual(directory.models().map((m) => m.id), ["qwen-7b"]);
  assert.equal(apiError(() => directory.route({ model: "m", images: false })).status, 404);
});

Deno.test("ModelDirectory.route() sends embeddings to a model that embeds, and a chat never to one", () => {
  const mac = report("mac", [
    ["nomic-embed-text:latest", "embedding"],
    ["llama3.2:latest", "completion"],
  ], { default_model: "llama3.2:latest" });
  const directory = new ModelDirectory(backends, [
    worker("w-gpu", [report("gpu", [["qwen-7b", "completion"]])]),
    worker("w-mac", [mac]),
  ], { now: NOW });
  const embedding = directory.route({ model: "nomic-embed-text", images: false, embeddings: true });
  assert.deepEqual([embedding.backend.name, embedding.model], ["mac", "nomic-embed-text:latest"]);
  const unnamed = directory.route({ images: false, embeddings: true });
  assert.equal(unnamed.model, "nomic-embed-text:latest", "without a name, the first that embeds");

  const chat = apiError(() => directory.route({ model: "nomic-embed-text:latest", images: false }));
  assert.deepEqual([chat.status, chat.code, chat.param], [400, "model_not_for_chat", "model"]);
  assert.match(chat.message, /"qwen-7b" \(backend "gpu"\) chats/);
  const embed = apiError(() =>
    directory.route({ model: "qwen-7b", images: false, embeddings: true })
  );
  assert.deepEqual([embed.status, embed.code], [400, "model_not_for_embeddings"]);
  assert.match(
    embed.message,
    /"nomic-embed-text:latest" \(backend "mac"\) does \(if it does, list it in LLM_GPU_MODELS as qwen-7b=embedding\)/,
  );
});

Deno.test("ModelDirectory.route() never makes an embedding model a backend's default for chats", () => {
  const directory = new ModelDirectory(backendsFromConfig(loadConfig({ LLM_BACKENDS: "mac" })), [
    worker("w-mac", [
      report("mac", [["bge-m3:latest", "embedding"], ["llama3.2:latest", "completion"]], {
        default_model: undefined,
      }),
    ]),
  ], { now: NOW });
  assert.equal(directory.route({ images: false }).model, "llama3.2:latest");
});

Deno.test("ModelDirectory.routeEmbeddings() lets a model whose capabilities nobody could learn decide, and says when none embeds", () => {
  const unknown = report("mac", [["mystery:latest", "completion"]]);
  unknown.models[0].capabilities_unknown = true;
  const directory = new ModelDirectory(backends, [worker("w-mac", [unknown])], { now: NOW });
  assert.equal(directory.routeEmbeddings("mystery").model, "mystery:latest");
  const none = apiError(() => directory.routeEmbeddings(undefined));
  assert.equal(none.code, "model_not_for_embeddings");
  assert.match(none.message, /^No model embeds text; no backend serves a model known to$/);
});
