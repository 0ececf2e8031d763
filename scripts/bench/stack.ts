/**
 * The gateway under test, built from the app's real pieces: storage (Moto or
 * a temporary Deno KV file), the fixed-latency backend, the front door and a
 * worker whose store is watched.
 */
import type { Hono } from "hono";
import { createApp } from "../../lib/http/app.ts";
import { provisionAws } from "../../lib/storage/aws/provision.ts";
import { type Config, type Env, loadConfig } from "../../lib/core/config.ts";
import { createLogger } from "../../lib/core/log.ts";
import type { Services } from "../../lib/core/services.ts";
import { openServices } from "../../lib/storage/open.ts";
import { JobWorker } from "../../lib/worker/job_worker.ts";
import { startAwsEmulators, uniqueAwsEnv } from "../../tests/support/aws_emulators.ts";
import { type FixedLatencyLlm, startFixedLatencyLlm } from "./fixed_latency_llm.ts";
import { type JobWatch, watchJobs } from "./job_watch.ts";
import type { BenchOptions } from "./options.ts";

/** A running gateway for the bench. */
export interface BenchStack {
  config: Config;
  services: Services;
  // deno-lint-ignore no-explicit-any
  app: Hono<any>;
  worker: JobWorker;
  llm: FixedLatencyLlm;
  watch: JobWatch;
  /** Warnings and errors the gateway logged. */
  readonly logProblems: number;
  /** Stops everything that was started; safe to call at any point. */
  stop(): Promise<void>;
}

/** Starts storage, the stand-in, the app and a running worker. */
export async function startBenchStack(options: BenchOptions): Promise<BenchStack> {
  const cleanups: (() => Promise<void> | void)[] = [];
  const stop = async () => {
    for (const cleanup of cleanups.splice(0).reverse()) {
      try {
        await cleanup();
      } catch (err) {
        console.error(`Bench clean-up step failed: ${(err as Error).message}`);
      }
    }
  };
  try {
    let logProblems = 0;
    const logger = createLogger({
      level: "warn",
      write: (line) => {
        logProblems++;
        console.error(line);
      },
    });
    const llm = startFixedLatencyLlm(options.latencyMs);
    cleanups.push(() => llm.stop());
    const storageEnv = await storageEnvFor(options, cleanups);
    const config = loadConfig({
      ...storageEnv,
      VLLM_BASE_URL: llm.baseUrl,
      VLLM_MODEL: "bench-text-model",
      VLLM_CONCURRENCY: String(options.concurrency),
      OLLAMA_BASE_URL: llm.baseUrl,
      OLLAMA_MODEL: "bench-vision-model",
      POLL_WAIT_S: "1",
      WORKER_STALE_S: "0",
      LLM_TIMEOUT_S: String(Math.max(60, Math.ceil((options.latencyMs * 5) / 1000))),
      RETRY_DELAY_S: "1",
    });
    if (config.backend === "aws") await provisionAws(config, logger);
    const services = await openServices(config);
    cleanups.push(() => services.close());
    const watch = watchJobs(services.store);
    const worker = new JobWorker({ ...services, store: watch.store }, { logger });
    cleanups.push(() => worker.stop());
    await worker.start();
    const app = createApp(services, { logger });
    return {
      config,
      services,
      app,
      worker,
      llm,
      watch,
      get logProblems() {
        return logProblems;
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Fresh, uniquely named storage: tables and queues on new emulators (DynamoDB Local and Moto), or a temporary KV directory. */
async function storageEnvFor(
  options: BenchOptions,
  cleanups: (() => Promise<void> | void)[],
): Promise<Env> {
  if (options.backend === "embedded") {
    const dataDir = await Deno.makeTempDir({ prefix: "gateway-bench-" });
    cleanups.push(() => Deno.remove(dataDir, { recursive: true }));
    return { BACKEND: "embedded", DATA_DIR: dataDir };
  }
  const endpoint = options.awsEndpointUrl;
  if (endpoint) {
    return uniqueAwsEnv({ dynamodbUrl: endpoint, sqsUrl: endpoint, stop: async () => {} }, "Bench");
  }
  const emulators = await startAwsEmulators();
  cleanups.push(() => emulators.stop());
  return uniqueAwsEnv(emulators, "Bench");
}
