import assert from "node:assert/strict";
import { ConfigError, describeConfig, loadConfig } from "../lib/core/config.ts";

Deno.test("loadConfig() has working defaults for a local set-up", () => {
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

Deno.test("loadConfig() returns a frozen configuration", () => {
  const config = loadConfig({});
  assert.throws(() => {
    (config as { port: number }).port = 1;
  }, TypeError);
  assert.throws(() => {
    (config.vllm as { model: string }).model = "x";
  }, TypeError);
});

Deno.test("loadConfig() names every bad variable in one error", () => {
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

Deno.test("loadConfig() refuses the same queue for both lanes", () => {
  assert.throws(
    () => loadConfig({ JOBS_QUEUE: "q", PRIORITY_QUEUE: "q" }),
    /PRIORITY_QUEUE must differ/,
  );
});

Deno.test("loadConfig() gives an emulator placeholder credentials, and describeConfig() shows no secret", () => {
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

Deno.test("loadConfig() lets a service's own endpoint variable win over AWS_ENDPOINT_URL, as the AWS SDKs do", () => {
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

Deno.test("loadConfig() keeps the SDK's own credential chain for a mix of an emulator and real AWS", () => {
  const config = loadConfig({ BACKEND: "aws", AWS_ENDPOINT_URL_SQS: "http://127.0.0.1:5000" });
  assert.deepEqual(config.awsEndpoints, { dynamodb: undefined, sqs: "http://127.0.0.1:5000" });
  assert.equal(config.awsCredentials, undefined, "placeholders would lock real DynamoDB out");
  assert.equal(describeConfig(config).dynamodb_endpoint, "(AWS default)");
});

Deno.test("loadConfig() reads comma-separated settings trimmed, without empty entries", () => {
  const config = loadConfig({
    IMAGE_ALLOWED_HOSTS: " Images.Example , 127.0.0.1:8080,,[::1]:9000 , ",
    GATEWAY_API_KEYS: "Key-One, ,key-two",
    CORS_ORIGINS: "",
  });
  assert.deepEqual(config.imageAllowedHosts, ["images.example", "127.0.0.1:8080", "[::1]:9000"]);
  assert.deepEqual(config.apiKeys, ["Key-One", "key-two"], "keys keep their case");
  assert.deepEqual(config.corsOrigins, []);
});

Deno.test("loadConfig() reads GATEWAY_ADMIN_KEYS as a list, and describeConfig() only counts them", () => {
  assert.deepEqual(loadConfig({}).adminKeys, []);
  const config = loadConfig({
    GATEWAY_API_KEYS: "user-key",
    GATEWAY_ADMIN_KEYS: " boss-1 , boss-2 ,",
  });
  assert.deepEqual(config.adminKeys, ["boss-1", "boss-2"]);
  const described = JSON.stringify(describeConfig(config));
  assert.match(described, /"admin_keys":"2 configured"/);
  assert.ok(!described.includes("boss-1") && !described.includes("user-key"));
});
