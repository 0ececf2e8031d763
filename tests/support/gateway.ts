/**
 * A whole gateway for a test, on either backend: storage (Moto or a temporary
 * Deno KV file), stand-in LLMs, the app, and workers.
 */
import assert from "node:assert/strict";
import { ScanCommand } from "@aws-sdk/lib-dynamodb";
import type { Hono } from "hono";
import { createApp } from "../../lib/http/app.ts";
import { createAwsClients } from "../../lib/storage/aws/clients.ts";
import { provisionAws } from "../../lib/storage/aws/provision.ts";
import { backendsFromConfig } from "../../lib/core/backends.ts";
import { type BackendKind, type Config, type Env, loadConfig } from "../../lib/core/config.ts";
import type { Job } from "../../lib/core/jobs.ts";
import type { ChatMessage } from "../../lib/core/messages.ts";
import { createLogger, silentLogger } from "../../lib/core/log.ts";
import type { JobQueue, Lane, QueueDepth, QueueRef } from "../../lib/core/queue.ts";
import type { Services } from "../../lib/core/services.ts";
import { openServices } from "../../lib/storage/open.ts";
import type { ChatAccepted } from "../../lib/http/submit.ts";
import { JobWorker, type WorkerOptions } from "../../lib/worker/job_worker.ts";
import { eventually } from "./wait.ts";
import {
  type AwsEmulators,
  skipWithoutAwsEmulators,
  startAwsEmulators,
  uniqueAwsEnv,
} from "./aws_emulators.ts";
import {
  type RecordedRequest,
  type StandInAnswer,
  type StandInLlm,
  type StandInModel,
  startStandInLlm,
} from "./stand_in_llm.ts";

/** Both backends; every behaviour test runs on each. */
export const BACKENDS: readonly BackendKind[] = ["embedded", "aws"];

/** Options for {@linkcode TestGatewayFactory}. */
export interface TestGatewayOptions {
  /** Extra environment, over the test defaults. */
  env?: Env;
  vllmAnswer?: (request: RecordedRequest) => StandInAnswer | Promise<StandInAnswer>;
  ollamaAnswer?: (request: RecordedRequest) => StandInAnswer | Promise<StandInAnswer>;
  /** The vLLM stand-in's models; default `test-text-model`. */
  vllmModels?: StandInModel[];
  /** The Ollama stand-in's models; default `test-vision-model`, which sees images. */
  ollamaModels?: StandInModel[];
}

/** Options for {@linkcode TestGateway.startWorker}. */
export interface TestWorkerOptions extends Partial<WorkerOptions> {
  /** A queue to use instead of the gateway's, e.g. one that records or fails. */
  queue?: JobQueue;
  /**
   * The worker machine's own environment, over the gateway's: e.g.
   * `LLM_BACKENDS` for a worker that serves only some backends.
   */
  env?: Env;
}

/** A lane of every backend added up, or one backend's lane. */
export type DepthOf = Lane | QueueRef;

/** A running test gateway. */
export interface TestGateway {
  backend: BackendKind;
  env: Env;
  config: Config;
  services: Services;
  // deno-lint-ignore no-explicit-any
  app: Hono<any>;
  vllm: StandInLlm;
  ollama: StandInLlm;
  /** Starts a worker, on the gateway's services or some of its own; it is stopped with the gateway. */
  startWorker(options?: TestWorkerOptions): Promise<JobWorker>;
  /** POSTs a JSON body (or a raw string) to /chat in-process. */
  postChat(body: unknown): Promise<Response>;
  /** POSTs a chat that must be accepted (202), and returns what the front door answered. */
  send(body: Record<string, unknown>): Promise<ChatAccepted>;
  /** Polls the job until it is succeeded or failed, for at most `timeoutMs`. */
  waitForJob(jobId: string, timeoutMs?: number): Promise<Job>;
  /** The stored messages of a conversation (its stored id), or none. */
  storedMessages(conversationId: string): Promise<ChatMessage[]>;
  /** Message counts of a lane, added up over the backends, or of one backend's lane. */
  depth(of: DepthOf): Promise<QueueDepth>;
  /**
   * Waits until a lane's counts are `expected`. SQS's counts are approximate
   * and can lag the truth; Moto's and the embedded queue's are exact at once,
   * so a test that reads them once would pass here and flake on AWS.
   */
  depthBecomes(of: DepthOf, expected: QueueDepth, what?: string): Promise<void>;
  /** Every job record in the store. */
  jobRecords(): Promise<Job[]>;
  /** The front door's and workers' last log lines (JSON), for a failing wait to show what happened. */
  recentLogs(lines?: number): string;
  /** Stops workers, stand-ins and clients; safe to call twice. */
  stop(): Promise<void>;
}

/** Starts a gateway for the test that asked for it. */
export type TestGatewayFactory = (options?: TestGatewayOptions) => Promise<TestGateway>;

/**
 * Registers one test per backend. Gateways made with `start` are stopped when
 * the test ends, and so are the emulators of the AWS run.
 */
export function backendTest(
  name: string,
  fn: (t: Deno.TestContext, start: TestGatewayFactory) => Promise<void>,
): void {
  for (const backend of BACKENDS) {
    Deno.test({
      name: `${name} [${backend}]`,
      ignore: backend === "aws" && skipWithoutAwsEmulators(),
      async fn(t) {
        const emulators = backend === "aws" ? await startAwsEmulators() : undefined;
        const gateways: TestGateway[] = [];
        try {
          await fn(t, async (options) => {
            const gateway = await startTestGateway(backend, { emulators, ...options });
            gateways.push(gateway);
            return gateway;
          });
        } finally {
          for (const gateway of gateways) await gateway.stop();
          await emulators?.stop();
        }
      },
    });
  }
}

/** Environment for a gateway on fresh, uniquely named resources. */
export async function testEnv(backend: BackendKind, emulators?: AwsEmulators): Promise<Env> {
  const common = {
    POLL_WAIT_S: "1",
    RETRY_DELAY_S: "0",
    MAX_ATTEMPTS: "2",
    LLM_TIMEOUT_S: "10",
    WORKER_STALE_S: "0",
  };
  if (backend === "embedded") {
    return {
      ...common,
      BACKEND: "embedded",
      DATA_DIR: await Deno.makeTempDir({ prefix: "gateway-test-" }),
    };
  }
  if (!emulators) throw new TypeError("Cannot make an AWS test environment: no emulators given");
  return { ...common, ...uniqueAwsEnv(emulators) };
}

/** Makes storage ready for a configuration: tables and queues on the emulators; nothing for embedded. */
export async function provision(config: Config): Promise<void> {
  if (config.backend === "aws") await provisionAws(config, silentLogger);
}

/** Builds a gateway on fresh storage with two stand-in LLMs. */
export async function startTestGateway(
  backend: BackendKind,
  options: TestGatewayOptions & { emulators?: AwsEmulators } = {},
): Promise<TestGateway> {
  const vllm = startStandInLlm({
    name: "vllm",
    models: options.vllmModels ?? [{ id: "test-text-model" }],
    answer: options.vllmAnswer,
  });
  const ollama = startStandInLlm({
    name: "ollama",
    models: options.ollamaModels ??
      [{ id: "test-vision-model", capabilities: ["completion", "vision"] }],
    answer: options.ollamaAnswer,
  });
  const env = {
    ...await testEnv(backend, options.emulators),
    VLLM_BASE_URL: vllm.baseUrl,
    VLLM_MODEL: "test-text-model",
    OLLAMA_BASE_URL: ollama.baseUrl,
    OLLAMA_MODEL: "test-vision-model",
    ...options.env,
  };
  const config = loadConfig(env);
  await provision(config);
  const services = await openServices(config);
  // Kept, not printed: a wait that times out shows the last lines.
  const logLines: string[] = [];
  const logger = createLogger({
    write: (line) => {
      logLines.push(line);
      if (logLines.length > 400) logLines.splice(0, logLines.length - 400);
    },
  });
  const recentLogs = (lines = 40) =>
    `\n--- the gateway's last ${lines} log lines ---\n${logLines.slice(-lines).join("\n")}`;
  const app = createApp(services, { logger });
  const workers: JobWorker[] = [];
  let stopped = false;
  const depth = async (of: DepthOf): Promise<QueueDepth> => {
    const queues = typeof of === "string"
      ? config.llmBackends.map((b) => ({ backend: b.name, lane: of }))
      : [of];
    const depths = await Promise.all(queues.map((queue) => services.queue.depth(queue)));
    return depths.reduce((sum, d) => ({
      waiting: sum.waiting + d.waiting,
      in_flight: sum.in_flight + d.in_flight,
      dead: sum.dead + d.dead,
    }), { waiting: 0, in_flight: 0, dead: 0 });
  };
  const postChat = (body: unknown) =>
    Promise.resolve(app.request("/chat", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: typeof body === "string" ? body : JSON.stringify(body),
    }));

  return {
    backend,
    env,
    config,
    services,
    app,
    vllm,
    ollama,
    async startWorker(options = {}) {
      const { queue, env: workerEnv, ...workerOptions } = options;
      const workerConfig = workerEnv ? loadConfig({ ...env, ...workerEnv }) : config;
      const worker = new JobWorker(
        {
          ...services,
          config: workerConfig,
          backends: backendsFromConfig(workerConfig),
          queue: queue ?? services.queue,
        },
        { logger, ...workerOptions },
      );
      await worker.start();
      workers.push(worker);
      return worker;
    },
    postChat,
    async send(body) {
      const res = await postChat(body);
      assert.equal(
        res.status,
        202,
        `POST /chat answered ${res.status}: ${await res.clone().text()}`,
      );
      return await res.json();
    },
    async waitForJob(jobId, timeoutMs = Number(Deno.env.get("TEST_JOB_TIMEOUT_MS") ?? 90_000)) {
      const deadline = Date.now() + timeoutMs;
      while (true) {
        const job = await services.store.getJob(jobId);
        if (job && (job.status === "succeeded" || job.status === "failed")) return job;
        if (Date.now() > deadline) {
          throw new Error(
            `Job ${jobId} did not finish within ${timeoutMs} ms: ${
              JSON.stringify(job)
            }${recentLogs()}`,
          );
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    storedMessages: async (id) => (await services.store.getConversation(id))?.messages ?? [],
    depth,
    async depthBecomes(
      of,
      expected,
      what = `the ${JSON.stringify(of)} lane to hold ${JSON.stringify(expected)}`,
    ) {
      let last: QueueDepth | undefined;
      await eventually(
        async () => {
          last = await depth(of);
          return last.waiting === expected.waiting && last.in_flight === expected.in_flight &&
            last.dead === expected.dead;
        },
        what,
        60_000,
      ).catch((err) => {
        throw new Error(`${err.message}; last seen ${JSON.stringify(last)}${recentLogs()}`);
      });
    },
    jobRecords: () => listJobs(config),
    recentLogs,
    async stop() {
      if (stopped) return;
      stopped = true;
      await Promise.all(workers.map((w) => w.stop()));
      await Promise.all([vllm.stop(), ollama.stop()]);
      services.close();
      if (backend === "embedded") await Deno.remove(config.dataDir, { recursive: true });
    },
  };
}

/** Reads every job record straight from storage, bypassing the store under test. */
async function listJobs(config: Config): Promise<Job[]> {
  if (config.backend === "embedded") {
    const kv = await Deno.openKv(`${config.dataDir}/gateway.sqlite3`);
    try {
      return await Array.fromAsync(kv.list<Job>({ prefix: ["job"] }), (entry) => entry.value);
    } finally {
      kv.close();
    }
  }
  const clients = createAwsClients(config);
  try {
    const out = await clients.documents.send(new ScanCommand({ TableName: config.jobsTable }));
    // The table also holds the workers' records and the conversations' lines, which are no jobs.
    return (out.Items ?? []).filter((item) => "status" in item) as Job[];
  } finally {
    clients.destroy();
  }
}
