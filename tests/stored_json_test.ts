/**
 * The worker parses JSON the front door stored for a job (the chat sent with
 * it, its other request fields) only after checking how deep it nests: a
 * blob nested a hundred thousand levels deep fails its job at once, saying
 * why, instead of holding up the worker. The jobs are written straight to the
 * store, as a front door from before its own check would have written them.
 */
import assert from "node:assert/strict";
import { newJob } from "../lib/core/jobs.ts";
import { sendJob } from "../lib/core/turns.ts";
import { backendTest, type TestGateway } from "./support/gateway.ts";

/** Arrays nested `depth` levels deep. */
function nested(depth: number): string {
  return "[".repeat(depth) + "]".repeat(depth);
}

/** A stateless job whose chat or fields are the given JSON text, in the blob store. */
async function submitWithBlob(
  gateway: TestGateway,
  field: "context_ref" | "params_ref",
  json: string,
): Promise<string> {
  const { services } = gateway;
  const ref = await services.blobs.put(
    undefined,
    new TextEncoder().encode(json),
    "application/json",
  );
  const job = newJob({
    conversationId: crypto.randomUUID(),
    route: "vllm",
    model: "test-text-model",
    priority: "normal",
    userMessage: { role: "user", content: "hi" },
    ttlDays: 1,
    recordFields: { mode: "stateless", [field]: ref },
  });
  await services.store.createJob(job);
  await sendJob(services, job);
  return job.job_id;
}

backendTest(
  "the worker fails a job whose stored chat or fields nest deeper than 64 levels, before parsing them",
  async (t, start) => {
    const gateway = await start();
    await gateway.startWorker();

    await t.step("a chat nested 100,000 levels deep", async () => {
      const chat = `[{"role":"system","content":"be brief","extra":${nested(100_000)}}]`;
      const job = await gateway.waitForJob(await submitWithBlob(gateway, "context_ref", chat));
      assert.equal(job.status, "failed");
      assert.equal(job.attempts, 1, "not retried");
      assert.equal(
        job.error,
        "Failed for good: Cannot read the chat sent with the job: its JSON is nested more than 64 levels deep (arrays and objects)",
      );
    });

    await t.step("fields nested 100,000 levels deep", async () => {
      const fields = `{"temperature":0.5,"extra":${nested(100_000)}}`;
      const job = await gateway.waitForJob(await submitWithBlob(gateway, "params_ref", fields));
      assert.equal(job.status, "failed");
      assert.match(
        job.error ?? "",
        /Cannot read the fields sent with the job: its JSON is nested more than 64 levels/,
      );
    });

    await t.step("fields nested 60 levels deep still run", async () => {
      const fields = `{"temperature":0.5,"extra":${nested(59)}}`;
      const job = await gateway.waitForJob(await submitWithBlob(gateway, "params_ref", fields));
      assert.equal(job.status, "succeeded", job.error);
      assert.equal(gateway.vllm.requests.length, 1, "only this job reached vLLM");
      assert.equal(gateway.vllm.requests[0].temperature, 0.5);
    });
  },
);
