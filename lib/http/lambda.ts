/**
 * The AWS Lambda entry points. `handler` serves API Gateway HTTP API events
 * (payload format 2.0), whose responses API Gateway buffers and ends at 30 s.
 * `streamingHandler` serves a function URL in RESPONSE_STREAM mode, which
 * passes each piece of a streamed answer on as it is written, for up to the
 * function's timeout. Neither needs a Deno global, so `deno task build` can
 * bundle them for Node.js; the app is built on the first invocation.
 */
import { Hono } from "hono";
import { handle, streamHandle } from "hono/aws-lambda";
import { createApp } from "./app.ts";
import { ApiError, toBody } from "./errors.ts";
import { loadConfig } from "../core/config.ts";
import { createLogger } from "../core/log.ts";
import { openAwsServices } from "../storage/aws/open.ts";

type LambdaHandler = ReturnType<typeof handle>;
type StreamingHandler = ReturnType<typeof streamHandle>;

/** The part of the Lambda Node.js runtime's `awslambda` global a streaming handler needs. */
interface LambdaRuntime {
  streamifyResponse<T>(handler: T): T;
}

let lambda: LambdaHandler | undefined;
let streaming: StreamingHandler | undefined;

function buildApp(options: { streamsResponses: boolean }) {
  const config = loadConfig();
  if (config.backend !== "aws") {
    throw new Error(`Cannot start on Lambda: BACKEND must be "aws", got "${config.backend}"`);
  }
  const logger = createLogger({ file: config.logFile });
  return createApp(openAwsServices(config), { logger, ...options });
}

/** The handler API Gateway calls; the app is built on the first invocation, not at import. */
export const handler: LambdaHandler = (event, context) => {
  // A configuration error throws here, and the next invocation tries again.
  // HTTP API buffers the whole response, so the worker need not stream a reply into the store.
  lambda ??= handle(buildApp({ streamsResponses: false }));
  return lambda(event, context);
};

/**
 * What the streaming function URL serves: the OpenAI-compatible door, for
 * Open WebUI and other streaming clients; embeddings too, since the same base
 * URL serves Open WebUI's documents, and a large batch's answer may pass the
 * API URL's 30 seconds or Lambda's 6 MB buffered response. The URL has no API
 * Gateway (and so no throttling) in front of it, only the functions' reserved
 * concurrency, so the rest of the app (`/chat`, the console, admin) stays
 * behind the API URL.
 */
export const STREAMING_PATHS = [
  "/v1/chat/completions",
  "/v1/models",
  "/v1/embeddings",
  "/v1/responses",
  "/v1/responses/:response_id",
] as const;

function streamingDoor(
  app: { fetch(request: Request, env?: unknown): Response | Promise<Response> },
) {
  const door = new Hono();
  for (const path of STREAMING_PATHS) door.all(path, (c) => app.fetch(c.req.raw, c.env));
  door.notFound((c) =>
    c.json(
      toBody(
        new ApiError(
          404,
          `Not served on the streaming URL, which serves ${
            STREAMING_PATHS.join(", ")
          }: use the API URL`,
          { code: "not_found" },
        ),
      ),
      404,
    )
  );
  return door;
}

/** The Lambda runtime's `awslambda`, when it has one (the AWS SDK makes an empty one of its own). */
const runtime = (globalThis as { awslambda?: Partial<LambdaRuntime> }).awslambda;

/**
 * The handler a streaming function URL calls. The runtime tells a streaming
 * handler by the mark `awslambda.streamifyResponse` puts on it, so it is
 * marked here, at import; outside Lambda it is undefined.
 */
export const streamingHandler: StreamingHandler | undefined =
  typeof runtime?.streamifyResponse === "function"
    ? runtime.streamifyResponse<StreamingHandler>(async (event, responseStream, context) => {
      streaming ??= streamHandle(streamingDoor(buildApp({ streamsResponses: true })));
      await streaming(event, responseStream, context);
    })
    : undefined;
