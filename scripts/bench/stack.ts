/**
 * The gateway under test, built from the app's real pieces: storage (the
 * bench's AWS emulators or a temporary Deno KV file), the fixed-latency
 * backend, the front door and a worker whose store is watched. On AWS the
 * front door and the worker have clients of their own, as on two machines,
 * each counting its calls.
 */
import type { Hono } from "hono";
import { createApp } from "../../lib/http/app.ts";
import { provisionAws } from "../../lib/storage/aws/provision.ts";
import { type Config, type Env, loadConfig } from "../../lib/core/config.ts";
import { createLogger } from "../../lib/core/log.ts";
import type { Services } from "../../lib/core/services.ts";
import { openAwsServices } from "../../lib/storage/aws/open.ts";
import { openServices } from "../../lib/storage/open.ts";
import { JobWorker } from "../../lib/worker/job_worker.ts";
import { uniqueAwsEnv } from "../../tests/support/aws_emulators.ts";
import type { BenchEmulators } from "./emulators.ts";
import { type CallCounts, countingClients } from "./aws_calls.ts";
import { type JobProgress, watchJobs } from "./job_watch.ts";
import { type LlmProcess, startLlmProcess } from "./llm_process.ts";
import { startWorkerProcess } from "./worker_process.ts";
import type { BenchOptions } from "./options.ts";

/** A running gateway for the bench. */
export interface BenchStack {
  config: Config;
  /** The front door's services. */
  services: Services;
  // deno-lint-ignore no-explicit-any
  app: Hono<any>;
  /** The stand-in backend, in a process of its own as vLLM would be. */
  llm: LlmProcess;
  /** The jobs' ends, as the worker's store calls show them. */
  progress: JobProgress;
  /** AWS calls so far, by command, of the front door and of the worker (AWS only). */
  calls?: { frontDoor(): Promise<CallCounts>; worker(): Promise<CallCounts> };
  /** The processes whose CPU time the bench reports, by name. */
  processes: Record<string, number>;
  /** Warnings and errors the gateway logged. */
  readonly logProblems: number;
  /** Stops everything that was started; safe to call at any point. */
  stop(): Promise<void>;
}

/**
 * Starts storage (on `emulators` for AWS), the stand-in, the app and a
 * running worker: in this process on the embedded backend, as `deno task dev`
 * runs it; in a process of its own on AWS, as `deno task worker` runs it.
 */
export async function startBenchStack(
  options: BenchOptions,
  emulators?: () => Promise<BenchEmulators>,
): Promise<BenchStack> {
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
    const llm = await startLlmProcess(options.latencyMs);
    cleanups.push(() => llm.stop());
    const env: Env = {
      ...await storageEnvFor(options, cleanups, emulators),
      VLLM_BASE_URL: llm.baseUrl,
      VLLM_MODEL: "bench-text-model",
      VLLM_CONCURRENCY: String(options.concurrency),
      OLLAMA_BASE_URL: llm.baseUrl,
      OLLAMA_MODEL: "bench-vision-model",
      POLL_WAIT_S: "1",
      WORKER_STALE_S: "0",
      LLM_TIMEOUT_S: String(Math.max(60, Math.ceil((options.latencyMs * 5) / 1000))),
      RETRY_DELAY_S: "1",
    };
    const config = loadConfig(env);
    const processes: Record<string, number> = { "stand-in backend": llm.pid };
    let services: Services;
    let progress: JobProgress;
    let calls: BenchStack["calls"];
    if (config.backend === "aws") {
      await provisionAws(config, logger);
      const frontDoor = countingClients(config);
      services = openAwsServices(config, frontDoor.clients);
      cleanups.push(() => services.close());
      const worker = await startWorkerProcess(env as Record<string, string>);
      cleanups.push(() => worker.stop());
      progress = worker.progress;
      Object.assign(processes, {
        "bench and front door": Deno.pid,
        worker: worker.pid,
        ...(await emulators?.())?.processes,
      });
      calls = { frontDoor: () => Promise.resolve(new Map(frontDoor.calls)), worker: worker.calls };
    } else {
      services = await openServices(config);
      cleanups.push(() => services.close());
      const watch = watchJobs(services.store);
      const worker = new JobWorker({ ...services, store: watch.store }, { logger });
      cleanups.push(() => worker.stop());
      await worker.start();
      progress = watch;
      processes["bench, front door and worker"] = Deno.pid;
    }
    const app = createApp(services, { logger });
    return {
      config,
      services,
      app,
      llm,
      progress,
      calls,
      processes,
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

/** Fresh, uniquely named storage: tables and queues on the emulators, or a temporary KV directory. */
async function storageEnvFor(
  options: BenchOptions,
  cleanups: (() => Promise<void> | void)[],
  emulators?: () => Promise<BenchEmulators>,
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
  if (!emulators) throw new TypeError("Cannot start the AWS bench: no emulators given");
  return uniqueAwsEnv(await emulators(), "Bench");
}
