/**
 * The gateway's configuration: read from the environment here and nowhere else,
 * checked once at start-up, then passed down as a frozen object.
 */
import process from "node:process";
import { deepFreeze, EnvReader } from "./env_reader.ts";
import { type KeySpec, readKeys } from "./key_config.ts";
import { describeUrl } from "./text.ts";

/**
 * Where conversations, jobs and queues live: "embedded" in a local Deno KV
 * file with the worker in the same process, or "aws" on DynamoDB and SQS.
 */
export type BackendKind = "embedded" | "aws";

/** What software serves a backend: it decides how the worker asks what models it has. */
export type LlmKind = "vllm" | "ollama" | "openai";

/** Every kind, in the order error messages list them. */
export const LLM_KINDS: readonly LlmKind[] = ["vllm", "ollama", "openai"];

/** A model named in configuration, with what it can do (e.g. "completion", "vision", "tools"). */
export interface ModelSpec {
  readonly id: string;
  readonly capabilities: readonly string[];
}

/**
 * One LLM backend: a named OpenAI-compatible server. Its variables start with
 * `LLM_<NAME>_`, except for the two historic entries `vllm` and `ollama`,
 * which keep `VLLM_` and `OLLAMA_`.
 */
export interface LlmBackendConfig {
  /** The route name: lower-case letters, digits and `_`; also the suffix of its queues. */
  readonly name: string;
  readonly kind: LlmKind;
  /** Where the worker reaches it (ending in /v1); only a worker needs it. */
  readonly baseUrl?: string;
  /** The model a job gets when the client names none. */
  readonly model?: string;
  /** Models and capabilities given in configuration; empty means "ask the backend". */
  readonly models: readonly ModelSpec[];
  /** How many jobs a worker runs against it at once. */
  readonly concurrency: number;
  /** Sent to the backend as a bearer token. Never logged. */
  readonly apiKey?: string;
  /** The prefix of its variables, e.g. "VLLM_" or "LLM_GPU_", for messages. */
  readonly variablePrefix: string;
}

/** Endpoint overrides per AWS service; an absent one means the service's real AWS endpoint. */
export interface AwsEndpoints {
  readonly dynamodb?: string;
  readonly sqs?: string;
  readonly s3?: string;
}

/** Static AWS credentials, only ever used against a local emulator or when given explicitly. */
export interface AwsCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
}

/** Everything the gateway and the worker need to know, validated. */
export interface Config {
  readonly backend: BackendKind;
  /** Where the embedded backend keeps its data. */
  readonly dataDir: string;
  readonly port: number;
  /** Interface the local server binds to. */
  readonly host: string;
  readonly awsRegion: string;
  /**
   * Each AWS service's endpoint, set for Moto, DynamoDB Local or another
   * emulator; unset means real AWS. `AWS_ENDPOINT_URL_<SERVICE>` wins over
   * `AWS_ENDPOINT_URL`, as in the AWS SDKs.
   */
  readonly awsEndpoints: AwsEndpoints;
  readonly awsCredentials?: AwsCredentials;
  readonly conversationsTable: string;
  readonly jobsTable: string;
  /**
   * Queue name or URL the default-lane queues are named from: each backend's
   * is `<jobsQueue>-<backend name>` (see lib/core/queue.ts).
   */
  readonly jobsQueue: string;
  /** Queue name or URL the priority-lane queues are named from, as `jobsQueue`. */
  readonly priorityQueue: string;
  /**
   * The LLM backends, in order: the first takes text without a `model`. The
   * front door lists every backend any worker serves; a worker serves exactly
   * the ones in its own configuration.
   */
  readonly llmBackends: readonly LlmBackendConfig[];
  /** How often a worker asks its backends which models they serve. */
  readonly modelRefreshSeconds: number;
  /** How often a worker asks again a backend it found down (`MODEL_RETRY_S`). */
  readonly modelRetrySeconds: number;
  readonly logFile?: string;
  /** Bearer keys the front door accepts; empty means no authentication. Never logged. */
  readonly apiKeys: readonly string[];
  /**
   * SHA-256 digests (lowercase hex) of further accepted keys, so a deployment
   * need not hold the keys themselves (`GATEWAY_API_KEY_SHA256`).
   */
  readonly apiKeyDigests: readonly string[];
  /**
   * Names (`host` or `host:port`) a gateway without keys answers to besides
   * IP addresses and `localhost`; `*` for any (`ALLOWED_HOSTS`).
   */
  readonly allowedHosts: readonly string[];
  /** How long a request's body may take to arrive after its headers. */
  readonly bodyTimeoutMs: number;
  /**
   * Bearer keys that may also retry dead letters and redrive them; accepted
   * as API keys too. Empty means nobody may. Never logged.
   */
  readonly adminKeys: readonly string[];
  /** SHA-256 digests (lowercase hex) of further admin keys (`GATEWAY_ADMIN_KEY_SHA256`). */
  readonly adminKeyDigests: readonly string[];
  /**
   * Every configured key (API and admin) by owner id, with its name and its
   * limits (`GATEWAY_KEY_LIMITS`); never the key. See lib/core/key_config.ts.
   */
  readonly keys: readonly KeySpec[];
  /**
   * The window `rpm` and `tpm` count in (`LIMIT_WINDOW_S`): 60 makes them
   * per minute, as their names say; tests shorten it.
   */
  readonly limitWindowSeconds: number;
  /** The longest silence from a backend: before its first byte, and between two pieces of a reply. */
  readonly llmTimeoutMs: number;
  /** The longest a whole reply may take, however steadily it flows (`LLM_MAX_REPLY_S`). */
  readonly llmMaxReplyMs: number;
  /** SQS long-poll wait when the worker is idle (0 to 20). */
  readonly pollWaitSeconds: number;
  /** How long a received message stays hidden; a heartbeat renews it while the job runs. */
  readonly visibilityTimeoutSeconds: number;
  /** Delay before the first retry of a failed job; it doubles with each attempt. */
  readonly retryDelaySeconds: number;
  /** The longest retry delay. */
  readonly retryMaxDelaySeconds: number;
  /** On SIGINT/SIGTERM, how long running jobs may take to finish before they are released. */
  readonly shutdownGraceMs: number;
  /** Most recent history messages sent to a backend. */
  readonly historyMaxMessages: number;
  /**
   * Most JSON bytes of a chat sent to a backend, images included
   * (`HISTORY_MAX_BYTES`): older turns lose their images, then go.
   */
  readonly historyMaxBytes: number;
  /** Largest user message (text and image URLs, UTF-8 bytes) the front door accepts. */
  readonly maxMessageBytes: number;
  /** Largest request body the front door reads. */
  readonly maxBodyBytes: number;
  /**
   * Most request bodies over 1 MiB the front door reads at once
   * (`MAX_LARGE_BODIES`); another waits for a place up to half of `BODY_TIMEOUT_S`.
   */
  readonly maxLargeBodies: number;
  /** Largest stored conversation (JSON bytes); DynamoDB items stop at 400 KB. */
  readonly conversationMaxBytes: number;
  /** Largest image the worker fetches for Ollama. */
  readonly imageMaxBytes: number;
  /** Most bytes of images, all together, the worker inlines for one job. */
  readonly imageJobMaxBytes: number;
  /** Hosts (`host` or `host:port`) whose images may be fetched even from private addresses. */
  readonly imageAllowedHosts: readonly string[];
  /** How long the worker may spend fetching all of one job's images. */
  readonly imageTimeoutMs: number;
  /** Images one API key's jobs may be fetching at once on a worker (`IMAGE_FETCHES_PER_KEY`). */
  readonly imageFetchesPerKey: number;
  /** Seconds without a worker heartbeat after which POST /chat answers 503; 0 turns it off. */
  readonly workerStaleSeconds: number;
  /** The longest a request waits for its job: `/v1/chat/completions` and `GET /jobs/:id?wait=`. */
  readonly syncTimeoutMs: number;
  /**
   * How often a stream that waits for its job sends an SSE comment, so
   * proxies and clients with idle timeouts keep it open (`STREAM_KEEPALIVE_MS`).
   */
  readonly streamKeepAliveMs: number;
  /** Browser origins allowed by CORS; empty means CORS is off. */
  readonly corsOrigins: readonly string[];
  /** Hosts (`host` or `host:port`) that job callbacks may reach even on private addresses. */
  readonly callbackAllowedHosts: readonly string[];
  /** Deliveries before a job is given up; `deno task setup` writes it into the redrive policy. */
  readonly maxAttempts: number;
  /** How long job records are kept (DynamoDB TTL). */
  readonly jobTtlDays: number;
  /** The S3 bucket of the AWS backend's blobs: base64 images and long chats (`BLOB_BUCKET`). */
  readonly blobBucket: string;
  /** How long blobs are kept: the bucket's lifecycle rule (`BLOB_TTL_DAYS`). */
  readonly blobTtlDays: number;
  /**
   * Most bytes of blobs (images, long chats) one API key may hold, all keys'
   * alike; without keys, all requests together (`BLOB_KEY_MAX_BYTES`).
   */
  readonly blobKeyMaxBytes: number;
  /**
   * How long after a message joins a busy conversation its line is looked at
   * again, and how long a job at the head may wait unstarted before it is
   * sent again (see lib/turns.ts). At most 900, SQS's longest delay.
   */
  readonly lineCheckSeconds: number;
  /** How often the worker looks through the dead-letter queues for jobs nobody gave up. */
  readonly deadLetterSweepSeconds: number;
}

/** Thrown at start-up when an environment variable is missing or malformed. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** The environment as a plain record; tests pass their own. */
export type Env = Readonly<Record<string, string | undefined>>;

/** Reads the process environment (works under Deno and under Node.js in Lambda). */
export function processEnv(): Env {
  return { ...process.env };
}

/** Builds and validates the configuration from an environment record. */
export function loadConfig(env: Env = processEnv()): Config {
  const problems: string[] = [];
  const read = new EnvReader(env, problems);

  const backend = read.oneOf("BACKEND", ["embedded", "aws"] as const, "embedded");
  const anyService = read.optionalUrl("AWS_ENDPOINT_URL");
  const awsEndpoints: AwsEndpoints = {
    dynamodb: read.optionalUrl("AWS_ENDPOINT_URL_DYNAMODB") ?? anyService,
    sqs: read.optionalUrl("AWS_ENDPOINT_URL_SQS") ?? anyService,
    s3: read.optionalUrl("AWS_ENDPOINT_URL_S3") ?? anyService,
  };
  const keys = readKeys(read);
  const config: Config = {
    backend,
    dataDir: read.string("DATA_DIR", "./data"),
    port: read.integer("PORT", 8787, 0, 65535),
    host: read.string("HOST", "127.0.0.1"),
    awsRegion: read.string("AWS_REGION", "us-east-1"),
    awsEndpoints,
    awsCredentials: readCredentials(
      env,
      Object.values(awsEndpoints).every((url) => url !== undefined),
    ),
    conversationsTable: read.string("CONVERSATIONS_TABLE", "Conversations"),
    jobsTable: read.string("JOBS_TABLE", "GatewayJobs"),
    jobsQueue: read.string("JOBS_QUEUE", "llm-jobs"),
    priorityQueue: read.string("PRIORITY_QUEUE", "llm-jobs-priority"),
    llmBackends: readLlmBackends(read),
    modelRefreshSeconds: read.integer("MODEL_REFRESH_S", 60, 5, 86_400),
    modelRetrySeconds: read.integer("MODEL_RETRY_S", 5, 1, 86_400),
    logFile: env.LOG_FILE?.trim() || undefined,
    apiKeys: keys.apiKeys,
    apiKeyDigests: keys.apiKeyDigests,
    allowedHosts: read.list("ALLOWED_HOSTS", { lowercase: true }),
    bodyTimeoutMs: read.integer("BODY_TIMEOUT_S", 30, 1, 3600) * 1000,
    adminKeys: keys.adminKeys,
    adminKeyDigests: keys.adminKeyDigests,
    keys: keys.keys,
    limitWindowSeconds: read.integer("LIMIT_WINDOW_S", 60, 1, 3600),
    llmTimeoutMs: read.integer("LLM_TIMEOUT_S", 120, 1, 3600) * 1000,
    llmMaxReplyMs: read.integer("LLM_MAX_REPLY_S", 1800, 1, 86_400) * 1000,
    pollWaitSeconds: read.integer("POLL_WAIT_S", 20, 0, 20),
    visibilityTimeoutSeconds: read.integer("VISIBILITY_TIMEOUT_S", 60, 2, 43200),
    retryDelaySeconds: read.integer("RETRY_DELAY_S", 10, 0, 43200),
    retryMaxDelaySeconds: read.integer("RETRY_MAX_DELAY_S", 900, 0, 43200),
    shutdownGraceMs: read.integer("SHUTDOWN_GRACE_MS", 10_000, 0, 3_600_000),
    historyMaxMessages: read.integer("HISTORY_MAX_MESSAGES", 50, 0, 100_000),
    historyMaxBytes: read.integer("HISTORY_MAX_BYTES", 2_000_000, 1024, 100_000_000),
    maxMessageBytes: read.integer("MAX_MESSAGE_BYTES", 32_768, 1, 10_000_000),
    maxBodyBytes: read.integer("MAX_BODY_BYTES", 8_388_608, 1024, 100_000_000),
    maxLargeBodies: read.integer("MAX_LARGE_BODIES", 8, 1, 10_000),
    conversationMaxBytes: read.integer("CONVERSATION_MAX_BYTES", 300_000, 1024, 390_000),
    imageMaxBytes: read.integer("IMAGE_MAX_BYTES", 10_485_760, 1, 100_000_000),
    imageJobMaxBytes: read.integer("IMAGE_JOB_MAX_BYTES", 20_971_520, 1, 1_000_000_000),
    imageAllowedHosts: read.list("IMAGE_ALLOWED_HOSTS", { lowercase: true }),
    imageTimeoutMs: read.integer("IMAGE_TIMEOUT_S", 15, 1, 600) * 1000,
    imageFetchesPerKey: read.integer("IMAGE_FETCHES_PER_KEY", 4, 1, 1000),
    workerStaleSeconds: read.integer("WORKER_STALE_S", 120, 0, 86_400),
    syncTimeoutMs: read.integer("SYNC_TIMEOUT_S", 300, 1, 3600) * 1000,
    streamKeepAliveMs: read.integer("STREAM_KEEPALIVE_MS", 5_000, 100, 300_000),
    corsOrigins: read.list("CORS_ORIGINS"),
    callbackAllowedHosts: read.list("CALLBACK_ALLOWED_HOSTS", { lowercase: true }),
    maxAttempts: read.integer("MAX_ATTEMPTS", 3, 1, 1000),
    jobTtlDays: read.integer("JOB_TTL_DAYS", 7, 1, 3650),
    blobBucket: read.string("BLOB_BUCKET", "llm-gateway-blobs"),
    blobTtlDays: read.integer("BLOB_TTL_DAYS", 30, 1, 3650),
    blobKeyMaxBytes: read.integer("BLOB_KEY_MAX_BYTES", 1_073_741_824, 1_048_576, 1e15),
    lineCheckSeconds: read.integer("LINE_CHECK_S", 120, 1, 900),
    deadLetterSweepSeconds: read.integer("DEAD_LETTER_SWEEP_S", 60, 1, 3600),
  };
  if (config.imageJobMaxBytes < config.imageMaxBytes) {
    problems.push("IMAGE_JOB_MAX_BYTES must be at least IMAGE_MAX_BYTES");
  }
  for (
    const [variable, digests] of [
      ["GATEWAY_API_KEY_SHA256", config.apiKeyDigests],
      ["GATEWAY_ADMIN_KEY_SHA256", config.adminKeyDigests],
    ] as const
  ) {
    const badDigest = digests.find((d) => !/^[0-9a-f]{64}$/.test(d));
    if (badDigest !== undefined) {
      problems.push(
        `${variable} must hold SHA-256 digests as 64 hex digits, got one of ${badDigest.length} characters`,
      );
    }
  }
  if (config.jobsQueue === config.priorityQueue) {
    problems.push("PRIORITY_QUEUE must differ from JOBS_QUEUE");
  }
  if (problems.length > 0) {
    throw new ConfigError(`Invalid configuration: ${problems.join("; ")}`);
  }
  return deepFreeze(config);
}

/** A one-line, secret-free description of the configuration, for the start-up log. */
export function describeConfig(config: Config): Record<string, unknown> {
  const storage = config.backend === "embedded" ? { data_dir: config.dataDir } : {
    aws_region: config.awsRegion,
    dynamodb_endpoint: shownUrl(config.awsEndpoints.dynamodb) ?? "(AWS default)",
    sqs_endpoint: shownUrl(config.awsEndpoints.sqs) ?? "(AWS default)",
    s3_endpoint: shownUrl(config.awsEndpoints.s3) ?? "(AWS default)",
    blob_bucket: config.blobBucket,
    conversations_table: config.conversationsTable,
    jobs_table: config.jobsTable,
    jobs_queue: config.jobsQueue,
    priority_queue: config.priorityQueue,
  };
  return {
    backend: config.backend,
    ...storage,
    api_keys: hasApiKeys(config)
      ? `${config.apiKeys.length + config.apiKeyDigests.length} configured`
      : "none: no authentication",
    admin_keys: hasAdminKeys(config)
      ? `${config.adminKeys.length + config.adminKeyDigests.length} configured`
      : "none: nobody may retry or redrive dead letters",
    // Names and limits only: what a key is called says nothing of the key.
    keys: config.keys.map((k) => ({
      name: k.name,
      ...(k.admin ? { admin: true } : {}),
      ...k.limits,
    })),
    llm_backends: config.llmBackends.map((b) => ({
      name: b.name,
      kind: b.kind,
      base_url: shownUrl(b.baseUrl) ?? "(unset)",
      model: b.model ?? "(from its workers)",
      concurrency: b.concurrency,
    })),
  };
}

/** Whether the front door asks for a key: keys or their digests are configured. */
export function hasApiKeys(config: Config): boolean {
  return config.apiKeys.length > 0 || config.apiKeyDigests.length > 0;
}

/** Whether anyone may retry and redrive dead letters: admin keys or their digests are configured. */
export function hasAdminKeys(config: Config): boolean {
  return config.adminKeys.length > 0 || config.adminKeyDigests.length > 0;
}

/** A URL for the log: as given, unless it holds a user name, password or query, which may be secrets. */
function shownUrl(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  const { username, password, search, hash } = new URL(url);
  return username || password || search || hash ? describeUrl(url) : url;
}

/** Per-kind defaults; a backend's own variables override them. */
const KIND_DEFAULTS: Record<LlmKind, { baseUrl?: string; concurrency: number }> = {
  vllm: { baseUrl: "http://localhost:8000/v1", concurrency: 16 },
  ollama: { baseUrl: "http://localhost:11434/v1", concurrency: 2 },
  openai: { concurrency: 4 },
};

/** The two historic entries: their variable prefix and default model. */
const HISTORIC: Record<string, { prefix: string; model: string }> = {
  vllm: { prefix: "VLLM_", model: "Qwen/Qwen2.5-1.5B-Instruct" },
  ollama: { prefix: "OLLAMA_", model: "llava" },
};

const BACKEND_NAME = /^[a-z][a-z0-9_]{0,31}$/;
const CAPABILITY = /^[a-z][a-z_]*$/;

/** The backends named in `LLM_BACKENDS` (default `vllm,ollama`), each from its own variables. */
function readLlmBackends(read: EnvReader): LlmBackendConfig[] {
  const names = read.optionalString("LLM_BACKENDS") === undefined
    ? ["vllm", "ollama"]
    : read.list("LLM_BACKENDS");
  if (names.length === 0) read.problem("LLM_BACKENDS must name at least one backend");
  const backends: LlmBackendConfig[] = [];
  for (const name of names) {
    if (!BACKEND_NAME.test(name)) {
      read.problem(
        `LLM_BACKENDS entry "${name}" must be lower-case letters, digits and _, starting with a letter, at most 32 characters`,
      );
      continue;
    }
    if (backends.some((b) => b.name === name)) {
      read.problem(`LLM_BACKENDS names "${name}" twice`);
      continue;
    }
    backends.push(readLlmBackend(read, name));
  }
  return backends;
}

function readLlmBackend(read: EnvReader, name: string): LlmBackendConfig {
  const historic = HISTORIC[name];
  const prefix = historic?.prefix ?? `LLM_${name.toUpperCase()}_`;
  const defaultKind = (LLM_KINDS as readonly string[]).includes(name) ? name as LlmKind : "openai";
  const kind = read.oneOf(`${prefix}KIND`, LLM_KINDS, defaultKind);
  const defaults = KIND_DEFAULTS[kind];
  return {
    name,
    kind,
    baseUrl: read.optionalUrl(`${prefix}BASE_URL`) ?? defaults.baseUrl,
    model: read.optionalString(`${prefix}MODEL`) ?? historic?.model,
    models: readModelSpecs(read, `${prefix}MODELS`),
    concurrency: read.integer(`${prefix}CONCURRENCY`, defaults.concurrency, 1, 1024),
    apiKey: read.optionalString(`${prefix}API_KEY`),
    variablePrefix: prefix,
  };
}

/**
 * A list such as `llama3.2:latest,llava:7b=vision,qwen2.5-coder=tools+vision`:
 * each model with the capabilities after `=`, joined by `+`. Every listed
 * model answers chats ("completion"), except one marked `=embedding`, which
 * only embeds (vLLM's model list cannot tell; mark it `=embedding+completion`
 * if it does both).
 */
function readModelSpecs(read: EnvReader, variable: string): ModelSpec[] {
  return read.list(variable).flatMap((entry) => {
    const at = entry.lastIndexOf("=");
    const id = (at < 0 ? entry : entry.slice(0, at)).trim();
    const listed = at < 0 ? [] : entry.slice(at + 1).split("+").map((c) => c.trim().toLowerCase());
    const bad = listed.filter((c) => !CAPABILITY.test(c));
    if (!id || bad.length > 0) {
      read.problem(
        `${variable} entry "${entry}" must be a model id, optionally followed by =capability+capability`,
      );
      return [];
    }
    const chat = listed.includes("embedding") ? [] : ["completion"];
    return [{ id, capabilities: [...new Set([...chat, ...listed])] }];
  });
}

function readCredentials(env: Env, allOnEmulators: boolean): AwsCredentials | undefined {
  const accessKeyId = env.AWS_ACCESS_KEY_ID?.trim();
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY?.trim();
  if (accessKeyId && secretAccessKey) {
    return {
      accessKeyId,
      secretAccessKey,
      sessionToken: env.AWS_SESSION_TOKEN?.trim() || undefined,
    };
  }
  // An emulator accepts any key; without this the SDK would go looking for
  // credentials in files and the instance metadata service.
  return allOnEmulators ? { accessKeyId: "local", secretAccessKey: "local" } : undefined;
}
