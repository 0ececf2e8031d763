/** A whole gateway for a test: Moto tables and queues, stand-in LLMs, the app, and a worker. */
import { GetQueueAttributesCommand, GetQueueUrlCommand } from "@aws-sdk/client-sqs";
import { ScanCommand } from "@aws-sdk/lib-dynamodb";
import type { Hono } from "hono";
import { createApp } from "../../lib/app.ts";
import { type AwsClients, createAwsClients } from "../../lib/aws/clients.ts";
import { provisionAws } from "../../lib/aws/provision.ts";
import { type Config, type Env, loadConfig } from "../../lib/config.ts";
import type { Job } from "../../lib/jobs.ts";
import { silentLogger } from "../../lib/log.ts";
import { openServices, type Services } from "../../lib/services.ts";
import { JobWorker } from "../../lib/worker_loop.ts";
import type { Moto } from "./moto.ts";
import {
  type RecordedRequest,
  type StandInAnswer,
  type StandInLlm,
  startStandInLlm,
} from "./stand_in_llm.ts";

/** Options for {@linkcode startTestGateway}. */
export interface TestGatewayOptions {
  /** Extra environment, over the test defaults. */
  env?: Env;
  vllmAnswer?: (request: RecordedRequest) => StandInAnswer;
  ollamaAnswer?: (request: RecordedRequest) => StandInAnswer;
}

/** A running test gateway. */
export interface TestGateway {
  env: Env;
  config: Config;
  services: Services;
  clients: AwsClients;
  // deno-lint-ignore no-explicit-any
  app: Hono<any>;
  vllm: StandInLlm;
  ollama: StandInLlm;
  /** Starts a worker; it is stopped by {@linkcode TestGateway.stop}. */
  startWorker(): Promise<JobWorker>;
  /** POSTs a JSON body (or a raw string) to /chat in-process. */
  postChat(body: unknown): Promise<Response>;
  /** Polls the job until it is succeeded or failed, for at most `timeoutMs`. */
  waitForJob(jobId: string, timeoutMs?: number): Promise<Job>;
  /** Messages waiting or in flight on a queue (name or URL). */
  queueDepth(queue: string): Promise<number>;
  /** Every job record in the jobs table. */
  jobRecords(): Promise<Job[]>;
  stop(): Promise<void>;
}

/** Environment that points a gateway at Moto with fresh, uniquely named resources. */
export function testEnv(moto: Moto, extra: Env = {}): Env {
  const suffix = crypto.randomUUID().slice(0, 8);
  return {
    BACKEND: "aws",
    AWS_ENDPOINT_URL: moto.url,
    AWS_REGION: "us-east-1",
    AWS_ACCESS_KEY_ID: "test",
    AWS_SECRET_ACCESS_KEY: "test",
    CONVERSATIONS_TABLE: `Conversations-${suffix}`,
    JOBS_TABLE: `GatewayJobs-${suffix}`,
    JOBS_QUEUE: `llm-jobs-${suffix}`,
    PRIORITY_QUEUE: `llm-jobs-priority-${suffix}`,
    POLL_WAIT_S: "1",
    RETRY_DELAY_S: "0",
    MAX_ATTEMPTS: "2",
    LLM_TIMEOUT_S: "10",
    ...extra,
  };
}

/** Provisions fresh resources on Moto and builds a gateway on them. */
export async function startTestGateway(
  moto: Moto,
  options: TestGatewayOptions = {},
): Promise<TestGateway> {
  const vllm = startStandInLlm({ name: "vllm", answer: options.vllmAnswer });
  const ollama = startStandInLlm({ name: "ollama", answer: options.ollamaAnswer });
  const env = testEnv(moto, {
    VLLM_BASE_URL: vllm.baseUrl,
    VLLM_MODEL: "test-text-model",
    OLLAMA_BASE_URL: ollama.baseUrl,
    OLLAMA_MODEL: "test-vision-model",
    ...options.env,
  });
  const config = loadConfig(env);
  const clients = createAwsClients(config);
  await provisionAws(clients, config, silentLogger);
  const services = openServices(config);
  const app = createApp(services, { logger: silentLogger });
  const workers: JobWorker[] = [];

  return {
    env,
    config,
    services,
    clients,
    app,
    vllm,
    ollama,
    async startWorker() {
      const worker = new JobWorker(services, { logger: silentLogger });
      await worker.start();
      workers.push(worker);
      return worker;
    },
    postChat(body) {
      return Promise.resolve(app.request("/chat", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: typeof body === "string" ? body : JSON.stringify(body),
      }));
    },
    async waitForJob(jobId, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      while (true) {
        const job = await services.store.getJob(jobId);
        if (job && (job.status === "succeeded" || job.status === "failed")) return job;
        if (Date.now() > deadline) {
          throw new Error(
            `Job ${jobId} did not finish within ${timeoutMs} ms: ${JSON.stringify(job)}`,
          );
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async queueDepth(queue) {
      const { QueueUrl } = await clients.sqs.send(new GetQueueUrlCommand({ QueueName: queue }));
      const out = await clients.sqs.send(
        new GetQueueAttributesCommand({
          QueueUrl,
          AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        }),
      );
      return Number(out.Attributes?.ApproximateNumberOfMessages) +
        Number(out.Attributes?.ApproximateNumberOfMessagesNotVisible);
    },
    async jobRecords() {
      const out = await clients.documents.send(new ScanCommand({ TableName: config.jobsTable }));
      return (out.Items ?? []) as Job[];
    },
    async stop() {
      await Promise.all(workers.map((w) => w.stop()));
      await Promise.all([vllm.stop(), ollama.stop()]);
      services.close();
      clients.destroy();
    },
  };
}
