import assert from "node:assert/strict";
import { ConfigError, describeConfig, loadConfig } from "../lib/config.ts";

Deno.test("configuration has working defaults for a local set-up", () => {
  const config = loadConfig({});
  assert.equal(config.backend, "embedded", "a fresh clone needs no AWS and no Moto");
  assert.equal(config.dataDir, "./data");
  assert.equal(config.port, 8787);
  assert.equal(config.awsRegion, "us-east-1");
  assert.equal(config.conversationsTable, "Conversations");
  assert.equal(config.jobsTable, "GatewayJobs");
  assert.equal(config.jobsQueue, "llm-jobs");
  assert.equal(config.priorityQueue, "llm-jobs-priority");
  assert.equal(config.vllm.baseUrl, "http://localhost:8000/v1");
  assert.equal(config.ollama.baseUrl, "http://localhost:11434/v1");
  assert.deepEqual(config.awsEndpoints, { dynamodb: undefined, sqs: undefined });
  assert.equal(config.awsCredentials, undefined, "real AWS uses the SDK's own credential chain");
});

Deno.test("configuration is frozen", () => {
  const config = loadConfig({});
  assert.throws(() => {
    (config as { port: number }).port = 1;
  }, TypeError);
  assert.throws(() => {
    (config.vllm as { model: string }).model = "x";
  }, TypeError);
});

Deno.test("a bad variable is named in one error that lists every problem", () => {
  assert.throws(
    () => loadConfig({ PORT: "eighty", VLLM_BASE_URL: "localhost:8000", BACKEND: "gcp" }),
    (err: Error) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /PORT must be a whole number from 0 to 65535, got "eighty"/);
      assert.match(err.message, /VLLM_BASE_URL must be an http\(s\) URL, got "localhost:8000"/);
      assert.match(err.message, /BACKEND must be one of embedded, aws, got "gcp"/);
      return true;
    },
  );
});

Deno.test("the same queue for both lanes is refused", () => {
  assert.throws(
    () => loadConfig({ JOBS_QUEUE: "q", PRIORITY_QUEUE: "q" }),
    /PRIORITY_QUEUE must differ/,
  );
});

Deno.test("an emulator endpoint gets placeholder credentials, and the description shows no secret", () => {
  const config = loadConfig({ AWS_ENDPOINT_URL: "http://127.0.0.1:5000/" });
  assert.deepEqual(config.awsEndpoints, {
    dynamodb: "http://127.0.0.1:5000",
    sqs: "http://127.0.0.1:5000",
  });
  assert.equal(config.awsCredentials?.accessKeyId, "local");
  const withKeys = loadConfig({
    AWS_ACCESS_KEY_ID: "AKIAEXAMPLE",
    AWS_SECRET_ACCESS_KEY: "very-secret",
  });
  const described = JSON.stringify(describeConfig(withKeys));
  assert.ok(!described.includes("very-secret") && !described.includes("AKIAEXAMPLE"));
});

Deno.test("a service's own endpoint variable wins over AWS_ENDPOINT_URL, as in the AWS SDKs", () => {
  const config = loadConfig({
    BACKEND: "aws",
    AWS_ENDPOINT_URL: "http://127.0.0.1:5000",
    AWS_ENDPOINT_URL_DYNAMODB: "http://127.0.0.1:8000",
  });
  assert.deepEqual(config.awsEndpoints, {
    dynamodb: "http://127.0.0.1:8000",
    sqs: "http://127.0.0.1:5000",
  });
  assert.equal(config.awsCredentials?.accessKeyId, "local");
  const described = describeConfig(config);
  assert.equal(described.dynamodb_endpoint, "http://127.0.0.1:8000");
  assert.equal(described.sqs_endpoint, "http://127.0.0.1:5000");
});

Deno.test("a mix of an emulator and real AWS keeps the SDK's own credential chain", () => {
  const config = loadConfig({ BACKEND: "aws", AWS_ENDPOINT_URL_SQS: "http://127.0.0.1:5000" });
  assert.deepEqual(config.awsEndpoints, { dynamodb: undefined, sqs: "http://127.0.0.1:5000" });
  assert.equal(config.awsCredentials, undefined, "placeholders would lock real DynamoDB out");
  assert.equal(describeConfig(config).dynamodb_endpoint, "(AWS default)");
});
