/**
 * A newcomer who has not run `deno task setup`, or has not started Moto,
 * gets a 503 that names what is missing and the command that makes it, not a
 * bare 500: a table, a queue, the bucket, or an endpoint that refuses
 * connections.
 */
import assert from "node:assert/strict";
import { loadConfig } from "../lib/core/config.ts";
import { silentLogger } from "../lib/core/log.ts";
import { createApp } from "../lib/http/app.ts";
import type { ErrorBody } from "../lib/http/errors.ts";
import { openServices, storageProblems } from "../lib/storage/open.ts";
import { skipWithoutAwsEmulators, startAwsEmulators } from "./support/aws_emulators.ts";
import { startTestGateway } from "./support/gateway.ts";
import { pngDataUrl } from "./support/image_server.ts";
import { freePort } from "./support/net.ts";

/** What the front door answers a request when its configuration differs from the set-up by `env`. */
async function answer(
  base: Record<string, string | undefined>,
  env: Record<string, string>,
  request: { path: string; body?: unknown },
): Promise<{ status: number; error: ErrorBody["error"] }> {
  const services = await openServices(loadConfig({ ...base, ...env }));
  try {
    const app = createApp(services, { logger: silentLogger });
    const res = await app.request(request.path, {
      method: request.body === undefined ? "GET" : "POST",
      headers: { "content-type": "application/json" },
      body: request.body === undefined ? undefined : JSON.stringify(request.body),
    });
    return { status: res.status, error: (await res.json() as ErrorBody).error };
  } finally {
    services.close();
  }
}

Deno.test({
  name: "on AWS, a missing table, queue or bucket, or no Moto, is a 503 that says what to run",
  ignore: skipWithoutAwsEmulators(),
  async fn(t) {
    const emulators = await startAwsEmulators();
    const gateway = await startTestGateway("aws", { emulators });
    const chat = { conversation_id: "c", user_message: "hi" };
    try {
      await t.step("a table that is not there", async () => {
        for (const request of [{ path: "/v1/models" }, { path: "/chat", body: chat }]) {
          const { status, error } = await answer(
            gateway.env,
            { JOBS_TABLE: "NoSuchJobs" },
            request,
          );
          assert.equal(status, 503, JSON.stringify(error));
          assert.equal(error.code, "resource_missing");
          assert.match(
            error.message,
            /a DynamoDB table of the gateway is missing: run `deno task setup`/,
          );
        }
      });

      await t.step("a queue that is not there", async () => {
        const { status, error } = await answer(gateway.env, { JOBS_QUEUE: "no-such-queue" }, {
          path: "/chat",
          body: chat,
        });
        assert.equal(status, 503, JSON.stringify(error));
        assert.match(
          error.message,
          /an SQS queue of the gateway is missing: run `deno task setup`/,
        );
      });

      await t.step("a bucket that is not there, for an image sent inline", async () => {
        const { status, error } = await answer(gateway.env, { BLOB_BUCKET: "no-such-bucket" }, {
          path: "/chat",
          body: { ...chat, images: [{ image_url: pngDataUrl() }] },
        });
        assert.equal(status, 503, JSON.stringify(error));
        assert.match(error.message, /the blob bucket is missing: run `deno task setup`/);
      });

      await t.step("an endpoint nothing listens on", async () => {
        const nowhere = `http://127.0.0.1:${freePort()}`;
        const { status, error } = await answer(gateway.env, {
          AWS_ENDPOINT_URL_DYNAMODB: nowhere,
          AWS_ENDPOINT_URL_SQS: nowhere,
          AWS_ENDPOINT_URL_S3: nowhere,
        }, { path: "/v1/models" });
        assert.equal(status, 503, JSON.stringify(error));
        assert.equal(error.code, "endpoint_unreachable");
        assert.match(error.message, /refuses connections: start moto_server/);
      });
    } finally {
      await gateway.stop();
      await emulators.stop();
    }
  },
});

Deno.test({
  name:
    "at start-up the AWS services name each missing table, queue and bucket, and a dead endpoint once",
  ignore: skipWithoutAwsEmulators(),
  async fn(t) {
    const emulators = await startAwsEmulators();
    const gateway = await startTestGateway("aws", { emulators });
    const check = (env: Record<string, string>, options?: { bucket?: boolean }) =>
      storageProblems(loadConfig({ ...gateway.env, ...env }), options);
    try {
      await t.step("a set-up that `deno task setup` made lacks nothing", async () => {
        assert.deepEqual(await check({}), []);
      });

      await t.step("what is missing is named, with the command that makes it", async () => {
        const missing = await check({
          JOBS_TABLE: "NoSuchJobs",
          JOBS_QUEUE: "no-such-queue",
          BLOB_BUCKET: "no-such-bucket",
        });
        assert.deepEqual(missing.sort(), [
          'DynamoDB table "NoSuchJobs" does not exist: run `deno task setup`',
          'S3 bucket "no-such-bucket" does not exist: run `deno task setup`',
          'SQS queue "no-such-queue-ollama" does not exist: run `deno task setup`',
          'SQS queue "no-such-queue-vllm" does not exist: run `deno task setup`',
        ]);
      });

      await t.step("a worker leaves the bucket out", async () => {
        assert.deepEqual(await check({ BLOB_BUCKET: "no-such-bucket" }, { bucket: false }), []);
      });

      await t.step("an endpoint nobody listens at is said once", async () => {
        const nobody = `http://127.0.0.1:${freePort()}`;
        assert.deepEqual(
          await check({ AWS_ENDPOINT_URL_DYNAMODB: nobody, AWS_ENDPOINT_URL_SQS: nobody }),
          [
            "The AWS endpoint refuses connections: start moto_server (or check AWS_ENDPOINT_URL), then run `deno task setup`",
          ],
        );
      });
    } finally {
      await gateway.stop();
      await emulators.stop();
    }
  },
});
