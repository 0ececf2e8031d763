/**
 * The gateway's front door. `deno task dev` serves it locally; in AWS, Lambda
 * calls `handler` behind API Gateway HTTP API (payload format 2.0).
 */
import { handle } from "hono/aws-lambda";
import { createApp } from "./lib/app.ts";
import { describeConfig, loadConfig } from "./lib/config.ts";
import { createLogger } from "./lib/log.ts";
import { openServices } from "./lib/services.ts";

/** Reads the configuration and builds the app with its logger. */
function buildGateway() {
  const config = loadConfig();
  const logger = createLogger({ file: config.logFile });
  const services = openServices(config);
  return { config, logger, services, app: createApp(services, { logger }) };
}

type LambdaHandler = ReturnType<typeof handle>;
let lambda: LambdaHandler | undefined;

/** AWS Lambda entry point; the app is built on the first invocation, not at import. */
export const handler: LambdaHandler = (event, context) => {
  lambda ??= handle(buildGateway().app);
  return lambda(event, context);
};

if (import.meta.main) {
  const { config, logger, services, app } = buildGateway();
  logger.info("Gateway starting", describeConfig(config));
  const server = Deno.serve({
    hostname: config.host,
    port: config.port,
    onListen: ({ hostname, port }) =>
      logger.info("Gateway listening", { url: `http://${hostname}:${port}` }),
  }, app.fetch);
  const shutdown = async () => {
    logger.info("Gateway stopping");
    await server.shutdown();
    services.close();
  };
  Deno.addSignalListener("SIGINT", shutdown);
  Deno.addSignalListener("SIGTERM", shutdown);
}
