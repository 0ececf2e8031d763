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
  assert.deepEqual(
    config.llmBackends.map((b) => [b.name, b.kind, b.baseUrl, b.model, b.concurrency]),
    [
      ["vllm", "vllm", "http://localhost:8000/v1", "Qwen/Qwen2.5-1.5B-Instruct", 16],
      ["ollama", "ollama", "http://localhost:11434/v1", "llava", 2],
    ],
    "the two historic entries, text first",
  );
  assert.equal(config.modelRefreshSeconds, 60);
  // Well inside the idle timeouts of common proxies (30 s and more): a waiting stream stays open.
  assert.equal(config.streamKeepAliveMs, 5_000);
  assert.deepEqual(config.awsEndpoints, { dynamodb: undefined, sqs: undefined, s3: undefined });
  assert.equal(config.awsCredentials, undefined, "real AWS uses the SDK's own credential chain");
});

Deno.test("loadConfig() returns a frozen configuration", () => {
  const config = loadConfig({});
  assert.throws(() => {
    (config as { port: number }).port = 1;
  }, TypeError);
  assert.throws(() => {
    (config.llmBackends[0] as { model: string }).model = "x";
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
    s3: "http://127.0.0.1:5000",
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
    s3: "http://127.0.0.1:5000",
  });
  assert.equal(config.awsCredentials?.accessKeyId, "local");
  const described = describeConfig(config);
  assert.equal(described.dynamodb_endpoint, "http://127.0.0.1:8000");
  assert.equal(described.sqs_endpoint, "http://127.0.0.1:5000");
});

Deno.test("loadConfig() keeps the SDK's own credential chain for a mix of an emulator and real AWS", () => {
  const config = loadConfig({ BACKEND: "aws", AWS_ENDPOINT_URL_SQS: "http://127.0.0.1:5000" });
  assert.deepEqual(config.awsEndpoints, {
    dynamodb: undefined,
    sqs: "http://127.0.0.1:5000",
    s3: undefined,
  });
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

Deno.test("loadConfig() reads each backend of LLM_BACKENDS from its LLM_<NAME>_ variables", () => {
  const config = loadConfig({
    LLM_BACKENDS: "gpu, mac,cloud",
    LLM_GPU_KIND: "vllm",
    LLM_GPU_BASE_URL: "http://gpu-box.lan:8000/v1/",
    LLM_GPU_MODEL: "Qwen/Qwen2.5-7B-Instruct",
    LLM_GPU_CONCURRENCY: "8",
    LLM_GPU_API_KEY: "gpu-secret",
    LLM_MAC_KIND: "ollama",
    LLM_MAC_MODELS: "llama3.2:latest, llava:7b=vision+Tools",
    LLM_CLOUD_KIND: "openai",
    VLLM_BASE_URL: "http://ignored:1/v1",
  });
  const [gpu, mac, cloud] = config.llmBackends;
  assert.deepEqual(gpu, {
    name: "gpu",
    kind: "vllm",
    baseUrl: "http://gpu-box.lan:8000/v1",
    model: "Qwen/Qwen2.5-7B-Instruct",
    models: [],
    concurrency: 8,
    apiKey: "gpu-secret",
    variablePrefix: "LLM_GPU_",
  });
  assert.equal(mac.baseUrl, "http://localhost:11434/v1", "the kind's default address");
  assert.equal(mac.concurrency, 2);
  assert.equal(mac.model, undefined, "the default model then comes from its workers");
  assert.deepEqual(mac.models, [
    { id: "llama3.2:latest", capabilities: ["completion"] },
    { id: "llava:7b", capabilities: ["completion", "vision", "tools"] },
  ]);
  assert.equal(cloud.baseUrl, undefined, "an openai backend has no default address");
  assert.equal(config.llmBackends.length, 3, "vllm and ollama are not added");
  assert.ok(!JSON.stringify(describeConfig(config)).includes("gpu-secret"), "no API key logged");
});

Deno.test("loadConfig() names every bad backend setting in one error", () => {
  assert.throws(
    () =>
      loadConfig({
        LLM_BACKENDS: "gpu,GPU-2,gpu,mac",
        LLM_GPU_KIND: "tgi",
        LLM_MAC_BASE_URL: "localhost:11434",
        LLM_MAC_MODELS: "llava=see ing",
      }),
    (err: Error) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /LLM_BACKENDS entry "GPU-2" must be lower-case letters/);
      assert.match(err.message, /LLM_BACKENDS names "gpu" twice/);
      assert.match(err.message, /LLM_GPU_KIND must be one of vllm, ollama, openai, got "tgi"/);
      assert.match(err.message, /LLM_MAC_BASE_URL must be an http\(s\) URL/);
      assert.match(err.message, /LLM_MAC_MODELS entry "llava=see ing" must be a model id/);
      return true;
    },
  );
  assert.throws(() => loadConfig({ LLM_BACKENDS: " , " }), /LLM_BACKENDS must name at least one/);
});

Deno.test("loadConfig() reads key digests and refuses one that is not a SHA-256 digest", () => {
  const digest = "a".repeat(64);
  const config = loadConfig({ GATEWAY_API_KEY_SHA256: ` ${digest.toUpperCase()} ,` });
  assert.deepEqual(config.apiKeyDigests, [digest]);
  assert.match(describeConfig(config).api_keys as string, /^1 configured$/);
  assert.throws(
    () => loadConfig({ GATEWAY_API_KEY_SHA256: "my-actual-key" }),
    /GATEWAY_API_KEY_SHA256 must hold SHA-256 digests as 64 hex digits, got one of 13 characters/,
  );
  assert.throws(
    () => loadConfig({ IMAGE_MAX_BYTES: "2000", IMAGE_JOB_MAX_BYTES: "1000" }),
    /IMAGE_JOB_MAX_BYTES must be at least IMAGE_MAX_BYTES/,
  );
});

Deno.test("loadConfig() reads admin keys and their digests, and describeConfig() only counts them", () => {
  assert.deepEqual(loadConfig({}).adminKeys, []);
  const digest = "b".repeat(64);
  const config = loadConfig({
    GATEWAY_API_KEYS: "user-key",
    GATEWAY_ADMIN_KEYS: " boss-1 , boss-2 ,",
    GATEWAY_ADMIN_KEY_SHA256: digest.toUpperCase(),
  });
  assert.deepEqual(config.adminKeys, ["boss-1", "boss-2"]);
  assert.deepEqual(config.adminKeyDigests, [digest]);
  const described = JSON.stringify(describeConfig(config));
  assert.match(described, /"admin_keys":"3 configured"/);
  assert.ok(!described.includes("boss-1") && !described.includes("user-key"));
  assert.throws(
    () => loadConfig({ GATEWAY_ADMIN_KEY_SHA256: "boss-1" }),
    /GATEWAY_ADMIN_KEY_SHA256 must hold SHA-256 digests as 64 hex digits, got one of 6 characters/,
  );
});
