/**
 * The AWS Lambda entry point (API Gateway HTTP API, payload format 2.0). It
 * needs no Deno global, so `deno task build` can bundle it for Node.js.
 */
import { handle } from "hono/aws-lambda";
import { createApp } from "./app.ts";
import { loadConfig } from "./config.ts";
import { createLogger } from "./log.ts";
import { openServices } from "./services.ts";

type LambdaHandler = ReturnType<typeof handle>;
let lambda: Promise<LambdaHandler> | undefined;

async function buildHandler(): Promise<LambdaHandler> {
  const config = loadConfig();
  if (config.backend !== "aws") {
    throw new Error(`Cannot start on Lambda: BACKEND must be "aws", got "${config.backend}"`);
  }
  const logger = createLogger({ file: config.logFile });
  return handle(createApp(await openServices(config), { logger }));
}

/** The handler Lambda calls; the app is built on the first invocation, not at import. */
export const handler: LambdaHandler = async (event, context) => {
  lambda ??= buildHandler().catch((err) => {
    lambda = undefined; // the next invocation tries again
    throw err;
  });
  return (await lambda)(event, context);
};
