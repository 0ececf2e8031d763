/**
 * The models people actually run: two workers on one store, one beside a
 * vLLM stand-in and one beside an Ollama stand-in with a chat model and a
 * vision model, each serving only its own backend. The catalogue they publish
 * is read through `/v1/models` with the real `openai` package, and jobs go to
 * the backend that serves their model.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import type { ErrorBody } from "../lib/http/errors.ts";
import { backendTest, type TestGateway } from "./support/gateway.ts";
import { pngDataUrl, startImageServer } from "./support/image_server.ts";
import { startStandInLlm } from "./support/stand_in_llm.ts";
import { eventually } from "./support/wait.ts";

/** The front door's view: both backends by name and kind, the GPU box's default model; no addresses. */
const FRONT_DOOR_ENV = {
  LLM_BACKENDS: "gpu,mac",
  LLM_GPU_KIND: "vllm",
  LLM_GPU_MODEL: "qwen-7b",
  LLM_MAC_KIND: "ollama",
};

/** Two machines' stand-ins: vLLM on the GPU box, Ollama with a chat, a vision and an embedding model on the Mac. */
function startMachines() {
  const gpu = startStandInLlm({ name: "gpu", kind: "vllm", models: [{ id: "qwen-7b" }] });
  const mac = startStandInLlm({
    name: "mac",
    kind: "ollama",
    models: [
      { id: "llama3.2:latest", capabilities: ["completion", "tools"] },
      { id: "llava:7b", capabilities: ["completion", "vision"] },
      { id: "nomic-embed-text:latest", capabilities: ["embedding"] },
    ],
  });
  return {
    gpu,
    mac,
    /** Each worker's own `.env`: only the backend beside it. */
    gpuEnv: { LLM_BACKENDS: "gpu", LLM_GPU_KIND: "vllm", LLM_GPU_BASE_URL: gpu.baseUrl },
    macEnv: { LLM_BACKENDS: "mac", LLM_MAC_KIND: "ollama", LLM_MAC_BASE_URL: mac.baseUrl },
    stop: () => Promise.all([gpu.stop(), mac.stop()]),
  };
}

function serve(gateway: TestGateway) {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    gateway.app.fetch,
  );
  return { base: `http://127.0.0.1:${server.addr.port}`, stop: () => server.shutdown() };
}

async function listedModels(openai: OpenAI): Promise<[string, string][]> {
  const models: [string, string][] = [];
  for await (const model of openai.models.list()) models.push([model.id, model.owned_by]);
  return models;
}

backendTest(
  "two workers on one store publish what their backends serve, and each job goes to the backend that serves its model",
  async (t, start) => {
    const machines = startMachines();
    const images = startImageServer();
    const gateway = await start({ env: { ...FRONT_DOOR_ENV, IMAGE_ALLOWED_HOSTS: images.host } });
    const http = serve(gateway);
    const openai = new OpenAI({
      baseURL: `${http.base}/v1`,
      apiKey: "unused",
      maxRetries: 0,
      timeout: 60_000,
    });
    const imageMessage = (model: string) => ({
      model,
      messages: [{
        role: "user" as const,
        content: [
          { type: "text" as const, text: "What is it?" },
          { type: "image_url" as const, image_url: { url: images.pngUrl } },
        ],
      }],
    });
    try {
      await t.step(
        "with no live worker, /v1/models lists the configured defaults and says so",
        async () => {
          const body = await (await fetch(`${http.base}/v1/models`)).json();
          assert.equal(body.catalogue, "configured_defaults");
          assert.deepEqual(await listedModels(openai), [["qwen-7b", "gpu"]]);
        },
      );

      const gpuWorker = await gateway.startWorker({ env: machines.gpuEnv });
      const macWorker = await gateway.startWorker({ env: machines.macEnv });

      await t.step(
        "/v1/models lists every model the live workers' backends serve, owned by the backend",
        async () => {
          assert.deepEqual(await listedModels(openai), [
            ["qwen-7b", "gpu"],
            ["llama3.2:latest", "mac"],
            ["llava:7b", "mac"],
            ["nomic-embed-text:latest", "mac"],
          ]);
          const body = await (await fetch(`${http.base}/v1/models`)).json();
          assert.equal(body.catalogue, "workers");
          assert.deepEqual(
            [...machines.mac.shown].sort(),
            ["llama3.2:latest", "llava:7b", "nomic-embed-text:latest"],
            "the Mac's worker asked Ollama's /api/show for each model's capabilities",
          );
          assert.ok(machines.gpu.listings > 0, "the GPU box's worker asked vLLM's /v1/models");
        },
      );

      await t.step("a completion goes to the backend that serves its model", async () => {
        const chat = await openai.chat.completions.create({
          model: "llama3.2:latest",
          messages: [{ role: "user", content: "hi Mac" }],
        });
        assert.equal(chat.choices[0].message.content, "mac says: hi Mac");
        const text = await openai.chat.completions.create({
          model: "qwen-7b",
          messages: [{ role: "user", content: "hi GPU" }],
        });
        assert.equal(text.choices[0].message.content, "gpu says: hi GPU");
        const vision = await openai.chat.completions.create(imageMessage("llava:7b"));
        assert.equal(vision.choices[0].message.content, "mac says: What is it?");
        const sent = machines.mac.requests.at(-1)!;
        assert.equal(sent.model, "llava:7b");
        assert.deepEqual(sent.messages[0].content, [
          { type: "text", text: "What is it?" },
          { type: "image_url", image_url: { url: pngDataUrl() } },
        ], "the image went to Ollama inlined, as Ollama requires");
      });

      await t.step("POST /chat routes by model, and by content without one", async () => {
        const byModel = await gateway.send({
          conversation_id: "c-model",
          user_message: "hello",
          model: "llama3.2:latest",
        });
        assert.equal(byModel.route, "mac");
        assert.equal(byModel.model, "llama3.2:latest");
        const text = await gateway.send({ conversation_id: "c-text", user_message: "hello" });
        assert.deepEqual([text.route, text.model], ["gpu", "qwen-7b"]);
        const picture = await gateway.send({
          conversation_id: "c-image",
          user_message: "look",
          images: [{ image_url: images.pngUrl }],
        });
        assert.deepEqual([picture.route, picture.model], ["mac", "llava:7b"]);
        for (
          const [accepted, reply] of [[byModel, "mac says: hello"], [text, "gpu says: hello"], [
            picture,
            "mac says: look",
          ]] as const
        ) {
          const job = await gateway.waitForJob(accepted.job_id);
          assert.equal(job.status, "succeeded", job.error);
          assert.equal(job.reply, reply);
        }
        assert.ok(
          machines.gpu.requests.every((r) => r.model === "qwen-7b") &&
            machines.mac.requests.every((r) => r.model !== "qwen-7b"),
          "each worker served only its own backend",
        );
      });

      await t.step(
        "an unknown model gets a 404 model_not_found in OpenAI's shape, and nothing is written",
        async () => {
          const jobsBefore = (await gateway.jobRecords()).length;
          const err = await openai.chat.completions.create({
            model: "gpt-4o",
            messages: [{ role: "user", content: "hi" }],
          }).then(() => undefined, (err) => err);
          assert.ok(err instanceof OpenAI.NotFoundError, String(err));
          assert.equal(err.status, 404);
          assert.equal(err.code, "model_not_found");
          const res = await gateway.postChat({
            conversation_id: "c-unknown",
            user_message: "hi",
            model: "gpt-4o",
          });
          assert.equal(res.status, 404);
          const { error } = await res.json() as ErrorBody;
          assert.equal(error.code, "model_not_found");
          assert.equal(error.type, "invalid_request_error");
          assert.equal(error.param, "model");
          assert.match(error.message, /The model "gpt-4o" does not exist/);
          assert.equal((await gateway.jobRecords()).length, jobsBefore);
        },
      );

      await t.step(
        "images for a model without vision get a 400 that names a model with it",
        async () => {
          const res = await gateway.postChat({
            conversation_id: "c-blind",
            user_message: "look",
            model: "llama3.2:latest",
            images: [{ image_url: images.pngUrl }],
          });
          assert.equal(res.status, 400);
          const { error } = await res.json() as ErrorBody;
          assert.equal(error.code, "model_without_vision");
          assert.match(error.message, /"llama3\.2:latest" does not take images; "llava:7b"/);
          const err = await openai.chat.completions.create(imageMessage("qwen-7b"))
            .then(() => undefined, (err) => err);
          assert.ok(err instanceof OpenAI.BadRequestError, String(err));
          assert.match(err.message, /"llava:7b" \(backend "mac"\) does/);
        },
      );

      await t.step("/healthz shows each backend's queues, live workers and models", async () => {
        const health = await (await gateway.app.request("/healthz")).json();
        const { gpu, mac } = health.backends;
        assert.equal(gpu.status, "up");
        assert.deepEqual(gpu.workers.map((w: { worker_id: string }) => w.worker_id), [
          gpuWorker.id,
        ]);
        assert.deepEqual(gpu.models, ["qwen-7b"]);
        assert.deepEqual(mac.workers.map((w: { worker_id: string }) => w.worker_id), [
          macWorker.id,
        ]);
        assert.deepEqual(mac.models, ["llama3.2:latest", "llava:7b", "nomic-embed-text:latest"]);
        assert.deepEqual(Object.keys(mac.queues), ["priority", "default"]);
      });

      await t.step("a model vanishes from the catalogue when its worker stops", async () => {
        await macWorker.stop();
        assert.deepEqual(await listedModels(openai), [["qwen-7b", "gpu"]]);
        const health = await (await gateway.app.request("/healthz")).json();
        assert.equal(health.backends.mac.status, "no_worker");
        assert.deepEqual(health.backends.mac.workers, []);
      });

      await t.step(
        "a job for a backend whose worker is down waits in its queue and runs once the worker returns",
        async () => {
          const waiting = await gateway.send({
            conversation_id: "c-later",
            user_message: "still there?",
            model: "llava:7b",
            images: [{ image_url: images.pngUrl }],
          });
          assert.equal(waiting.route, "mac", "routed by the Mac worker's last record");
          await gateway.depthBecomes(
            { backend: "mac", lane: "default" },
            { waiting: 1, in_flight: 0, dead: 0 },
          );
          assert.equal((await gateway.services.store.getJob(waiting.job_id))?.status, "queued");
          await gateway.startWorker({ env: machines.macEnv });
          const job = await gateway.waitForJob(waiting.job_id);
          assert.equal(job.status, "succeeded", job.error);
          assert.equal(job.reply, "mac says: still there?");
          assert.equal(job.attempts, 1);
        },
      );
    } finally {
      await http.stop();
      await images.stop();
      await machines.stop();
    }
  },
);

backendTest(
  "POST /chat answers 503 naming the backend when none of its workers has been seen for WORKER_STALE_S",
  async (t, start) => {
    const machines = startMachines();
    // A heartbeat every 2/3 s, against a staleness of 4 s.
    const gateway = await start({
      env: { ...FRONT_DOOR_ENV, WORKER_STALE_S: "4", VISIBILITY_TIMEOUT_S: "2" },
    });
    try {
      await gateway.startWorker({ env: machines.gpuEnv });
      const macWorker = await gateway.startWorker({ env: machines.macEnv });
      const accepted = await gateway.send({
        conversation_id: "stale",
        user_message: "first",
        model: "llama3.2:latest",
      });
      assert.equal((await gateway.waitForJob(accepted.job_id)).status, "succeeded");
      await macWorker.stop();

      await t.step("once the Mac's worker has been gone that long", async () => {
        await eventually(async () => {
          const health = await (await gateway.app.request("/healthz")).json();
          return health.backends.mac.stale === true;
        }, "the Mac's backend to count as stale");
        const jobsBefore = (await gateway.jobRecords()).length;
        const res = await gateway.postChat({
          conversation_id: "stale",
          user_message: "second",
          model: "llama3.2:latest",
        });
        assert.equal(res.status, 503);
        const { error } = await res.json() as ErrorBody;
        assert.equal(error.code, "no_worker");
        assert.match(
          error.message,
          /No worker available for backend "mac": its last worker was seen/,
        );
        assert.match(error.message, /WORKER_STALE_S is 4/);
        assert.equal((await gateway.jobRecords()).length, jobsBefore, "nothing was written");
      });

      await t.step("the GPU box's backend still takes messages", async () => {
        const text = await gateway.send({ conversation_id: "other", user_message: "hi" });
        assert.equal(text.route, "gpu");
        assert.equal((await gateway.waitForJob(text.job_id)).reply, "gpu says: hi");
        const health = await (await gateway.app.request("/healthz")).json();
        assert.equal(health.backends.gpu.stale, false);
        assert.equal(health.worker.stale, false, "some worker is alive");
      });
    } finally {
      await machines.stop();
    }
  },
);

backendTest(
  "a backend that stops answering is published as down, with the reason, and its models leave /v1/models",
  async (_t, start) => {
    const gateway = await start();
    await gateway.startWorker({ env: { MODEL_REFRESH_S: "5" } });
    const health = async () => (await (await gateway.app.request("/healthz")).json()).backends;
    assert.equal((await health()).ollama.status, "up");

    await gateway.ollama.stop();
    await eventually(
      async () => (await health()).ollama.status === "down",
      "the worker's next check to find Ollama down",
    );
    const { ollama, vllm } = await health();
    assert.match(ollama.error, /^Cannot reach backend "ollama"/);
    assert.ok(!ollama.error.includes("127.0.0.1"), `no address in ${ollama.error}`);
    assert.deepEqual(ollama.models, ["test-vision-model"], "the models it served last time");
    assert.equal(ollama.workers.length, 1, "its worker is still live");
    assert.equal(vllm.status, "up");
    const listed = await (await gateway.app.request("/v1/models")).json();
    assert.deepEqual(listed.data.map((m: { id: string }) => m.id), ["test-text-model"]);
  },
);
