/**
 * The AWS Lambda entry point (API Gateway HTTP API, payload format 2.0). It
 * needs no Deno global, so `deno task build` can bundle it for Node.js.
 */
import { handle } from "hono/aws-lambda";
import { createApp } from "./app.ts";
import { loadConfig } from "../core/config.ts";
import { createLogger } from "../core/log.ts";
import { openAwsServices } from "../storage/aws/open.ts";

type LambdaHandler = ReturnType<typeof handle>;
let lambda: LambdaHandler | undefined;

function buildHandler(): LambdaHandler {
  const config = loadConfig();
  if (config.backend !== "aws") {
    throw new Error(`Cannot start on Lambda: BACKEND must be "aws", got "${config.backend}"`);
  }
  const logger = createLogger({ file: config.logFile });
  // HTTP API buffers the whole response, so a streamed completion arrives in one piece anyway.
  return handle(createApp(openAwsServices(config), { logger, streamsResponses: false }));
}

/** The handler Lambda calls; the app is built on the first invocation, not at import. */
export const handler: LambdaHandler = (event, context) => {
  // A configuration error throws here, and the next invocation tries again.
  lambda ??= buildHandler();
  return lambda(event, context);
};
