import assert from "node:assert/strict";
import { handler } from "../main.ts";
import { startTestGateway } from "./support/gateway.ts";
import { skipWithoutAwsEmulators, startAwsEmulators } from "./support/aws_emulators.ts";
import { httpApiEvent } from "./support/lambda_events.ts";
import { holdProcessEnv } from "./support/process_env.ts";

const ignore = skipWithoutAwsEmulators();

Deno.test({
  name: "the Lambda handler answers API Gateway v2 events for POST /chat and GET /conversation",
  ignore,
  // The handler keeps its AWS clients for the life of the process, as a Lambda does.
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const emulators = await startAwsEmulators();
    // Without keys, as template.yaml's PublicAccess=yes deploys it: any Host (the API's domain).
    const gateway = await startTestGateway("aws", { emulators, env: { ALLOWED_HOSTS: "*" } });
    // main.ts reads its configuration from the process's environment, as a Lambda does.
    const processEnv = await holdProcessEnv(gateway.env);
    try {
      await gateway.startWorker();
      // deno-lint-ignore no-explicit-any
      const invoke = (event: unknown) => handler(event as any, {} as any) as Promise<any>;

      let jobId = "";
      await t.step("POST /chat enqueues the message and answers 202", async () => {
        const result = await invoke(httpApiEvent("POST", "/chat", {
          body: { conversation_id: "lambda-1", user_message: "Hi from Lambda" },
        }));
        assert.equal(result.statusCode, 202);
        const body = JSON.parse(result.body);
        assert.equal(body.status, "queued");
        jobId = body.job_id;
        assert.equal((await gateway.waitForJob(jobId)).status, "succeeded");
      });

      await t.step("GET /conversation returns the stored exchange", async () => {
        const result = await invoke(
          httpApiEvent("GET", "/conversation", { query: "conversation_id=lambda-1" }),
        );
        assert.equal(result.statusCode, 200);
        assert.deepEqual(JSON.parse(result.body).messages, [
          { role: "user", content: "Hi from Lambda" },
          { role: "assistant", content: "vllm says: Hi from Lambda" },
        ]);
      });

      await t.step(
        "a streamed completion comes back whole, and the worker streams nothing into the store",
        async () => {
          const result = await invoke(httpApiEvent("POST", "/v1/chat/completions", {
            body: { messages: [{ role: "user", content: "Stream me" }], stream: true },
          }));
          assert.equal(result.statusCode, 200, result.body);
          // Hono's adapter base64-encodes an event stream; API Gateway decodes it for the client.
          const body = result.isBase64Encoded
            ? new TextDecoder().decode(Uint8Array.from(atob(result.body), (c) => c.charCodeAt(0)))
            : result.body as string;
          const chunks = body.split("\n\n")
            .filter((e) => e.startsWith("data: {"))
            .map((e) => JSON.parse(e.slice("data: ".length)));
          assert.equal(
            chunks.map((c) => c.choices[0].delta.content ?? "").join(""),
            "vllm says: Stream me",
          );
          // HTTP API hands the client the whole response at once: a reply so far would be
          // waste, so the job is not streamed into the store (the worker still reads the
          // backend's own stream, as it always does).
          const jobId = chunks[0].id.replace(/^chatcmpl-/, "");
          const job = (await gateway.jobRecords()).find((j) => j.job_id === jobId);
          assert.equal(job?.status, "succeeded");
          assert.equal(job?.stream, false, "no reply so far is written");
        },
      );

      await t.step(
        "a wait ends in time to answer before the function's own timeout, with the job id",
        async () => {
          // 10 s left: exactly the margin kept back, so the wait ends at once.
          const context = { getRemainingTimeInMillis: () => 10_000 };
          const result = await (handler as (e: unknown, c: unknown) => Promise<
            { statusCode: number; body: string }
          >)(
            httpApiEvent("POST", "/v1/chat/completions", {
              body: { messages: [{ role: "user", content: "Late" }] },
            }),
            context,
          );
          assert.equal(result.statusCode, 504, result.body);
          const { error } = JSON.parse(result.body);
          assert.equal(error.code, "timeout");
          assert.match(error.message, /time is nearly up/);
          assert.equal((await gateway.waitForJob(error.job_id)).status, "succeeded", "it goes on");
        },
      );

      await t.step("a bad body gets its 400 in OpenAI's error shape", async () => {
        const result = await invoke(
          httpApiEvent("POST", "/chat", { body: { conversation_id: "x" } }),
        );
        assert.equal(result.statusCode, 400);
        assert.equal(JSON.parse(result.body).error.param, "user_message");
      });
    } finally {
      await processEnv.release();
      await gateway.stop();
      await emulators.stop();
    }
  },
});
