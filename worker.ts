/**
 * The worker that runs beside the LLMs (`deno task worker`): it only makes
 * outbound connections, pulling jobs from the queue and calling the backends.
 */
import { errorMessage } from "./lib/core/error_message.ts";
import { describeConfig, loadConfig } from "./lib/core/config.ts";
import { createLogger } from "./lib/core/log.ts";
import { openServices, storageProblems } from "./lib/storage/open.ts";
import { JobWorker } from "./lib/worker/job_worker.ts";

if (import.meta.main) {
  const config = loadConfig();
  const logger = createLogger({ file: config.logFile });
  if (config.backend === "embedded") {
    logger.error(
      "Nothing to do: with BACKEND=embedded the worker already runs inside `deno task dev`. " +
        "Set BACKEND=aws (see .env.example) to run the worker on its own.",
    );
    Deno.exit(1);
  }
  const services = await openServices(config);
  const worker = new JobWorker(services, { logger });

  logger.info("Worker starting", describeConfig(config));
  for (const missing of await storageProblems(config, { bucket: false })) {
    logger.error("Storage is not ready", { missing });
  }
  try {
    await worker.start();
  } catch (err) {
    logger.error(errorMessage(err));
    services.close();
    Deno.exit(1);
  }
  logger.info("Worker polling");
  const stop = () => {
    logger.info("Worker stopping", {
      // A long poll in flight is never cut off: what it brings would stay hidden for minutes.
      last_poll_ends_within_s: config.pollWaitSeconds,
      grace_ms: config.shutdownGraceMs,
    });
    worker.stop();
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await worker.finished;
  services.close();
  logger.info("Worker stopped");
}
