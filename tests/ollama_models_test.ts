/**
 * Ollama as people run it: models listed with their tags (`llava:latest`),
 * an `.env` that names them without (`OLLAMA_MODEL=llava`), and now and then
 * a model whose capabilities `/api/show` cannot tell. The names agree
 * everywhere, and an image is never dropped without a word.
 */
import assert from "node:assert/strict";
import { createLogger } from "../lib/core/log.ts";
import type { ErrorBody } from "../lib/http/errors.ts";
import { startBackendSwitch } from "./support/backend_switch.ts";
import { backendTest } from "./support/gateway.ts";
import { pngDataUrl, startImageServer } from "./support/image_server.ts";
import { type StandInModel, startStandInLlm } from "./support/stand_in_llm.ts";

/** An Ollama stand-in that lists its models with tags, as Ollama does. */
function startOllama(models: StandInModel[]) {
  return startStandInLlm({ name: "ollama", kind: "ollama", models });
}

backendTest(
  'OLLAMA_MODEL=llava and "model":"llava" mean the llava:latest Ollama lists',
  async (t, start) => {
    const ollama = startOllama([
      { id: "llama3.2:latest", capabilities: ["completion", "tools"] },
      { id: "llava:latest", capabilities: ["completion", "vision"] },
    ]);
    const images = startImageServer();
    try {
      const gateway = await start({
        env: {
          OLLAMA_BASE_URL: ollama.baseUrl,
          OLLAMA_MODEL: "llava",
          IMAGE_ALLOWED_HOSTS: images.host,
        },
      });
      const lines: string[] = [];
      await gateway.startWorker({ logger: createLogger({ write: (line) => lines.push(line) }) });

      await t.step("the worker starts without warning that its default is not served", () => {
        assert.ok(lines.some((l) => l.includes('"Backend is up"')), lines.join("\n"));
        assert.ok(!lines.some((l) => l.includes("is not served")), lines.join("\n"));
      });

      await t.step("a chat naming llava runs on llava:latest", async () => {
        const accepted = await gateway.send({
          conversation_id: "c",
          user_message: "hi",
          model: "llava",
        });
        assert.deepEqual([accepted.route, accepted.model], ["ollama", "llava:latest"]);
        const job = await gateway.waitForJob(accepted.job_id);
        assert.equal(job.status, "succeeded", job.error);
        assert.equal(ollama.requests.at(-1)?.model, "llava:latest");
        const res = await gateway.app.request("/v1/chat/completions", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ model: "llava", messages: [{ role: "user", content: "hey" }] }),
        });
        assert.equal(res.status, 200, await res.clone().text());
        assert.equal((await res.json()).choices[0].message.content, "ollama says: hey");
      });

      await t.step("images without a model go to the default, llava:latest", async () => {
        const accepted = await gateway.send({
          conversation_id: "pictures",
          user_message: "look",
          images: [{ image_url: images.pngUrl }],
        });
        assert.deepEqual([accepted.route, accepted.model], ["ollama", "llava:latest"]);
        assert.equal((await gateway.waitForJob(accepted.job_id)).status, "succeeded");
      });

      await t.step("another tag is another model", async () => {
        const res = await gateway.postChat({
          conversation_id: "c",
          user_message: "hi",
          model: "llava:7b",
        });
        assert.equal(res.status, 404);
        assert.equal((await res.json() as ErrorBody).error.code, "model_not_found");
      });
    } finally {
      await images.stop();
      await ollama.stop();
    }
  },
);

backendTest(
  "a model whose capabilities Ollama cannot tell gets the images sent to it, for Ollama to decide",
  async (t, start) => {
    const ollama = startOllama([{ id: "llava:latest", capabilities: ["completion", "vision"] }]);
    const ollamaShow = startBackendSwitch(ollama.baseUrl);
    ollamaShow.failing.add("/api/show");
    const images = startImageServer();
    try {
      const gateway = await start({
        env: {
          OLLAMA_BASE_URL: ollamaShow.baseUrl,
          OLLAMA_MODEL: "llava:latest",
          IMAGE_ALLOWED_HOSTS: images.host,
        },
      });
      const inlined = [
        { type: "text", text: "What is this?" },
        { type: "image_url", image_url: { url: pngDataUrl() } },
      ];
      const sendPicture = (conversation: string, model?: string) =>
        gateway.send({
          conversation_id: conversation,
          user_message: "What is this?",
          model,
          images: [{ image_url: images.pngUrl }],
        });

      await t.step(
        "a job routed before the worker started reaches Ollama with its image",
        async () => {
          // No worker has said anything yet: the front door goes by configuration.
          const accepted = await sendPicture("early", "llava:latest");
          await gateway.startWorker();
          assert.ok(ollamaShow.refused > 0, "the worker asked /api/show and was refused");
          const job = await gateway.waitForJob(accepted.job_id);
          assert.equal(job.status, "succeeded", job.error);
          assert.equal(ollama.requests.at(-1)?.model, "llava:latest", "as Ollama lists it");
          assert.deepEqual(ollama.requests.at(-1)?.messages.at(-1)?.content, inlined);
        },
      );

      for (const model of ["llava:latest", undefined]) {
        await t.step(
          `the front door takes an image ${
            model ? "for it" : "without a model"
          }, and so does Ollama`,
          async () => {
            const accepted = await sendPicture(`pictures-${model}`, model);
            assert.equal(accepted.route, "ollama");
            const job = await gateway.waitForJob(accepted.job_id);
            assert.equal(job.status, "succeeded", job.error);
            assert.equal(ollama.requests.at(-1)?.model, "llava:latest");
            assert.deepEqual(ollama.requests.at(-1)?.messages.at(-1)?.content, inlined);
          },
        );
      }
    } finally {
      await images.stop();
      await ollamaShow.stop();
      await ollama.stop();
    }
  },
);

backendTest(
  "images for a model its worker knows to be text-only fail the job, naming a model that sees them",
  async (_t, start) => {
    // Ollama has llava:latest as a model that cannot see (a text model pulled under that name); another sees.
    const ollama = startOllama([
      { id: "llava:latest", capabilities: ["completion"] },
      { id: "bakllava:latest", capabilities: ["completion", "vision"] },
    ]);
    const images = startImageServer();
    try {
      const gateway = await start({
        env: {
          OLLAMA_BASE_URL: ollama.baseUrl,
          OLLAMA_MODEL: "llava:latest",
          IMAGE_ALLOWED_HOSTS: images.host,
        },
      });
      // No worker has said anything yet: the front door goes by configuration, which says llava sees.
      const accepted = await gateway.send({
        conversation_id: "pictures",
        user_message: "What is this?",
        model: "llava:latest",
        images: [{ image_url: images.pngUrl }],
      });
      assert.equal(accepted.route, "ollama");
      await gateway.startWorker();
      const job = await gateway.waitForJob(accepted.job_id);
      assert.equal(job.status, "failed", "the image was not dropped for the job to succeed");
      assert.equal(job.attempts, 1, "not retried");
      assert.match(
        job.error ?? "",
        /Cannot send images to the model "llava:latest": it does not take images; "bakllava:latest" \(backend "ollama"\) does/,
      );
      assert.equal(ollama.requests.length, 0, "Ollama was never asked");
      assert.equal(images.hits.size, 0, "the image was never fetched");
    } finally {
      await images.stop();
      await ollama.stop();
    }
  },
);
