/**
 * The gateway's configuration: read from the environment here and nowhere else,
 * checked once at start-up, then passed down as a frozen object.
 */
import process from "node:process";

/**
 * Where conversations, jobs and queues live: "embedded" in a local Deno KV
 * file with the worker in the same process, or "aws" on DynamoDB and SQS.
 */
export type BackendKind = "embedded" | "aws";

/** The address, model and parallelism of one OpenAI-compatible LLM server. */
export interface LlmEndpoint {
  readonly baseUrl: string;
  readonly model: string;
  /** How many jobs the worker runs against it at once. */
  readonly concurrency: number;
}

/** Endpoint overrides per AWS service; an absent one means the service's real AWS endpoint. */
export interface AwsEndpoints {
  readonly dynamodb?: string;
  readonly sqs?: string;
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
  /** Queue name or full queue URL. */
  readonly jobsQueue: string;
  /** Queue name or full queue URL. */
  readonly priorityQueue: string;
  readonly vllm: LlmEndpoint;
  readonly ollama: LlmEndpoint;
  readonly logFile?: string;
  /** Bearer keys the front door accepts; empty means no authentication. Never logged. */
  readonly apiKeys: readonly string[];
  /**
   * Bearer keys that may also retry dead letters and redrive them; accepted
   * as API keys too. Empty means nobody may. Never logged.
   */
  readonly adminKeys: readonly string[];
  /** How long the worker waits for one backend answer. */
  readonly llmTimeoutMs: number;
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
  /** Largest user message (text and image URLs, UTF-8 bytes) the front door accepts. */
  readonly maxMessageBytes: number;
  /** Largest request body the front door reads. */
  readonly maxBodyBytes: number;
  /** Largest stored conversation (JSON bytes); DynamoDB items stop at 400 KB. */
  readonly conversationMaxBytes: number;
  /** Largest image the worker fetches for Ollama. */
  readonly imageMaxBytes: number;
  /** Hosts (`host` or `host:port`) whose images may be fetched even from private addresses. */
  readonly imageAllowedHosts: readonly string[];
  /** Timeout for fetching one image. */
  readonly imageTimeoutMs: number;
  /** Seconds without a worker heartbeat after which POST /chat answers 503; 0 turns it off. */
  readonly workerStaleSeconds: number;
  /** The longest a request waits for its job: `/v1/chat/completions` and `GET /jobs/:id?wait=`. */
  readonly syncTimeoutMs: number;
  /** Browser origins allowed by CORS; empty means CORS is off. */
  readonly corsOrigins: readonly string[];
  /** Hosts (`host` or `host:port`) that job callbacks may reach even on private addresses. */
  readonly callbackAllowedHosts: readonly string[];
  /** Deliveries before a job is given up; `deno task setup` writes it into the redrive policy. */
  readonly maxAttempts: number;
  /** How long job records are kept (DynamoDB TTL). */
  readonly jobTtlDays: number;
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
  };
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
    vllm: {
      baseUrl: read.url("VLLM_BASE_URL", "http://localhost:8000/v1"),
      model: read.string("VLLM_MODEL", "Qwen/Qwen2.5-1.5B-Instruct"),
      concurrency: read.integer("VLLM_CONCURRENCY", 16, 1, 1024),
    },
    ollama: {
      baseUrl: read.url("OLLAMA_BASE_URL", "http://localhost:11434/v1"),
      model: read.string("OLLAMA_MODEL", "llava"),
      concurrency: read.integer("OLLAMA_CONCURRENCY", 2, 1, 1024),
    },
    logFile: env.LOG_FILE?.trim() || undefined,
    apiKeys: read.list("GATEWAY_API_KEYS"),
    adminKeys: read.list("GATEWAY_ADMIN_KEYS"),
    llmTimeoutMs: read.integer("LLM_TIMEOUT_S", 120, 1, 3600) * 1000,
    pollWaitSeconds: read.integer("POLL_WAIT_S", 20, 0, 20),
    visibilityTimeoutSeconds: read.integer("VISIBILITY_TIMEOUT_S", 60, 2, 43200),
    retryDelaySeconds: read.integer("RETRY_DELAY_S", 10, 0, 43200),
    retryMaxDelaySeconds: read.integer("RETRY_MAX_DELAY_S", 900, 0, 43200),
    shutdownGraceMs: read.integer("SHUTDOWN_GRACE_MS", 10_000, 0, 3_600_000),
    historyMaxMessages: read.integer("HISTORY_MAX_MESSAGES", 50, 0, 100_000),
    maxMessageBytes: read.integer("MAX_MESSAGE_BYTES", 32_768, 1, 10_000_000),
    maxBodyBytes: read.integer("MAX_BODY_BYTES", 1_048_576, 1024, 100_000_000),
    conversationMaxBytes: read.integer("CONVERSATION_MAX_BYTES", 300_000, 1024, 390_000),
    imageMaxBytes: read.integer("IMAGE_MAX_BYTES", 10_485_760, 1, 100_000_000),
    imageAllowedHosts: read.list("IMAGE_ALLOWED_HOSTS", { lowercase: true }),
    imageTimeoutMs: read.integer("IMAGE_TIMEOUT_S", 15, 1, 600) * 1000,
    workerStaleSeconds: read.integer("WORKER_STALE_S", 120, 0, 86_400),
    syncTimeoutMs: read.integer("SYNC_TIMEOUT_S", 300, 1, 3600) * 1000,
    corsOrigins: read.list("CORS_ORIGINS"),
    callbackAllowedHosts: read.list("CALLBACK_ALLOWED_HOSTS", { lowercase: true }),
    maxAttempts: read.integer("MAX_ATTEMPTS", 3, 1, 1000),
    jobTtlDays: read.integer("JOB_TTL_DAYS", 7, 1, 3650),
    lineCheckSeconds: read.integer("LINE_CHECK_S", 120, 1, 900),
    deadLetterSweepSeconds: read.integer("DEAD_LETTER_SWEEP_S", 60, 1, 3600),
  };
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
    dynamodb_endpoint: config.awsEndpoints.dynamodb ?? "(AWS default)",
    sqs_endpoint: config.awsEndpoints.sqs ?? "(AWS default)",
    conversations_table: config.conversationsTable,
    jobs_table: config.jobsTable,
    jobs_queue: config.jobsQueue,
    priority_queue: config.priorityQueue,
  };
  return {
    backend: config.backend,
    ...storage,
    api_keys: config.apiKeys.length > 0
      ? `${config.apiKeys.length} configured`
      : "none: no authentication",
    admin_keys: config.adminKeys.length > 0
      ? `${config.adminKeys.length} configured`
      : "none: nobody may retry or redrive dead letters",
    vllm_base_url: config.vllm.baseUrl,
    vllm_model: config.vllm.model,
    ollama_base_url: config.ollama.baseUrl,
    ollama_model: config.ollama.model,
  };
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

class EnvReader {
  #env: Env;
  #problems: string[];

  constructor(env: Env, problems: string[]) {
    this.#env = env;
    this.#problems = problems;
  }

  #raw(name: string): string | undefined {
    const value = this.#env[name]?.trim();
    return value === "" ? undefined : value;
  }

  string(name: string, fallback: string): string {
    return this.#raw(name) ?? fallback;
  }

  /** A comma-separated setting: its entries, trimmed, without empty ones. */
  list(name: string, options: { lowercase?: boolean } = {}): string[] {
    return (this.#raw(name) ?? "").split(",")
      .map((entry) => options.lowercase ? entry.trim().toLowerCase() : entry.trim())
      .filter((entry) => entry.length > 0);
  }

  integer(name: string, fallback: number, min: number, max: number): number {
    const raw = this.#raw(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min || value > max) {
      this.#problems.push(`${name} must be a whole number from ${min} to ${max}, got "${raw}"`);
      return fallback;
    }
    return value;
  }

  oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    const raw = this.#raw(name);
    if (raw === undefined) return fallback;
    if ((allowed as readonly string[]).includes(raw)) return raw as T;
    this.#problems.push(`${name} must be one of ${allowed.join(", ")}, got "${raw}"`);
    return fallback;
  }

  url(name: string, fallback: string): string {
    return this.optionalUrl(name) ?? fallback;
  }

  optionalUrl(name: string): string | undefined {
    const raw = this.#raw(name);
    if (raw === undefined) return undefined;
    try {
      const url = new URL(raw);
      if (url.protocol === "http:" || url.protocol === "https:") return raw.replace(/\/+$/, "");
    } catch {
      // reported below
    }
    this.#problems.push(`${name} must be an http(s) URL, got "${raw}"`);
    return undefined;
  }
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object") {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
