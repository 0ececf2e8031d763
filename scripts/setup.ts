/** `deno task setup`: creates the tables and queues on the configured endpoint (Moto or AWS). */
import { provisionAws } from "../lib/storage/aws/provision.ts";
import { describeConfig, loadConfig } from "../lib/core/config.ts";
import { createLogger } from "../lib/core/log.ts";
import { errorMessage } from "../lib/core/error_message.ts";

if (import.meta.main) {
  const config = loadConfig();
  const logger = createLogger();
  if (config.backend !== "aws") {
    logger.info(
      "Nothing to set up: the embedded backend creates its data file on start. Set BACKEND=aws for Moto or AWS",
    );
    Deno.exit(0);
  }
  logger.info("Setting up tables and queues", describeConfig(config));
  try {
    await provisionAws(config, logger);
    logger.info("Setup done");
  } catch (err) {
    logger.error("Setup failed", { error: errorMessage(err) });
    Deno.exitCode = 1;
  }
}
