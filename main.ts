/**
 * The gateway's front door. `deno task dev` serves it locally (with the
 * embedded backend, the worker runs in this process too); in AWS, Lambda calls
 * `handler` behind API Gateway HTTP API (payload format 2.0).
 */
import { createApp } from "./lib/http/app.ts";
import { describeConfig, loadConfig } from "./lib/core/config.ts";
import { createLogger } from "./lib/core/log.ts";
import { openServices, storageProblems } from "./lib/storage/open.ts";
import { JobWorker } from "./lib/worker/job_worker.ts";

/** Reads the configuration and builds the app with its logger and services. */
async function buildGateway() {
  const config = loadConfig();
  const logger = createLogger({ file: config.logFile });
  const services = await openServices(config);
  return { config, logger, services, app: createApp(services, { logger }) };
}

/** AWS Lambda entry point, in its own module so it can be bundled without Deno. */
export { handler } from "./lib/http/lambda.ts";

if (import.meta.main) {
  const { config, logger, services, app } = await buildGateway();
  logger.info("Gateway starting", describeConfig(config));
  // Said now, not at the first request: `deno task setup` not run, or Moto not started.
  for (const missing of await storageProblems(config)) {
    logger.error("Storage is not ready", { missing });
  }
  const worker = config.backend === "embedded" ? new JobWorker(services, { logger }) : undefined;
  await worker?.start();
  const server = Deno.serve({
    hostname: config.host,
    port: config.port,
    onListen: ({ hostname, port }) =>
      logger.info("Gateway listening", {
        url: `http://${hostname}:${port}`,
        worker: worker ? "in this process" : "run `deno task worker` beside the LLMs",
      }),
  }, app.fetch);
  let stopping: Promise<void> | undefined;
  const shutdown = () => {
    stopping ??= (async () => {
      logger.info("Gateway stopping");
      await server.shutdown();
      await worker?.stop();
      services.close();
      logger.info("Gateway stopped");
    })();
  };
  Deno.addSignalListener("SIGINT", shutdown);
  Deno.addSignalListener("SIGTERM", shutdown);
}
