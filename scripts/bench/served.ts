/**
 * A gateway served over HTTP on 127.0.0.1 for the latency and stream benches,
 * laid out as it runs for real: on the embedded backend the worker shares the
 * front door's process and services (`deno task dev`); on the AWS backend the
 * worker has services and clients of its own, as on another machine, so the
 * front door learns of its writes only by reading DynamoDB.
 */
import { loadConfig } from "../../lib/core/config.ts";
import { createLogger } from "../../lib/core/log.ts";
import type { Services } from "../../lib/core/services.ts";
import { createApp } from "../../lib/http/app.ts";
import type { DynamoStore } from "../../lib/storage/aws/dynamo_store.ts";
import { provisionAws } from "../../lib/storage/aws/provision.ts";
import { openServices } from "../../lib/storage/open.ts";
import { JobWorker } from "../../lib/worker/job_worker.ts";
import { type AwsEmulators, uniqueAwsEnv } from "../../tests/support/aws_emulators.ts";
import { type JobWatch, watchJobs } from "./job_watch.ts";

/** A running, served gateway. */
export interface ServedGateway {
  /** http://127.0.0.1:<port> */
  readonly url: string;
  /** The worker's store calls, as it made them. */
  readonly watch: JobWatch;
  /** The front door's services. */
  readonly services: Services;
  /** Batched read calls of the front door's DynamoDB read loop (AWS only). */
  readonly readCalls: number | undefined;
  stop(): Promise<void>;
}

/** Starts a gateway whose backends are `llmBaseUrl`; on AWS, on fresh tables and queues of `emulators`. */
export async function startServedGateway(
  backend: "embedded" | "aws",
  llmBaseUrl: string,
  emulators?: AwsEmulators,
): Promise<ServedGateway> {
  const cleanups: (() => Promise<void> | void)[] = [];
  const stop = async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  };
  try {
    const logger = createLogger({ level: "warn", write: (line) => console.error(line) });
    let storage: Record<string, string>;
    if (backend === "embedded") {
      const dataDir = await Deno.makeTempDir({ prefix: "gateway-bench-" });
      cleanups.push(() => Deno.remove(dataDir, { recursive: true }));
      storage = { BACKEND: "embedded", DATA_DIR: dataDir };
    } else {
      if (!emulators) throw new TypeError("Cannot serve an AWS gateway: no emulators given");
      storage = uniqueAwsEnv(emulators, "Bench");
    }
    const config = loadConfig({
      ...storage,
      VLLM_BASE_URL: llmBaseUrl,
      VLLM_MODEL: "bench-text-model",
      VLLM_CONCURRENCY: "16",
      OLLAMA_BASE_URL: llmBaseUrl,
      POLL_WAIT_S: "1",
      WORKER_STALE_S: "0",
      SYNC_TIMEOUT_S: "60",
    });
    if (config.backend === "aws") await provisionAws(config, logger);
    const services = await openServices(config);
    cleanups.push(() => services.close());
    let workerServices = services;
    if (backend === "aws") {
      workerServices = await openServices(config);
      cleanups.push(() => workerServices.close());
    }
    const watch = watchJobs(workerServices.store);
    const worker = new JobWorker({ ...workerServices, store: watch.store }, { logger });
    await worker.start();
    cleanups.push(() => worker.stop());
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      createApp(services, { logger }).fetch,
    );
    cleanups.push(() => server.shutdown());
    return {
      url: `http://127.0.0.1:${server.addr.port}`,
      watch,
      services,
      get readCalls() {
        return backend === "aws" ? (services.store as DynamoStore).poller.calls : undefined;
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Sends a chat completion request; returns the response (its body unread). */
export function postCompletion(
  baseUrl: string,
  content: string,
  stream = false,
): Promise<Response> {
  return fetch(`${baseUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: "bench-text-model",
      messages: [{ role: "user", content }],
      stream,
    }),
  });
}
