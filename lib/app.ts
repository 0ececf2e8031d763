/** The front door: a Hono app that routes chat messages onto the queue. It never sees a runtime. */
import { errorMessage } from "./error_message.ts";
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { cors } from "hono/cors";
import { apiKeyAuth } from "./auth.ts";
import { parseChatRequest } from "./chat_request.ts";
import { health, submitChat } from "./chat_service.ts";
import { ApiError, errorHandler, invalidRequest, notFoundBody } from "./errors.ts";
import type { GatewayEnv } from "./http_context.ts";
import { jobView, ownJob, waitForJobEnd } from "./job_view.ts";
import type { Logger } from "./log.ts";
import { addOpenAiRoutes } from "./openai_routes.ts";
import { scopedConversationId } from "./owners.ts";
import type { Services } from "./services.ts";

/** Options for {@linkcode createApp}. */
export interface AppOptions {
  logger: Logger;
}

/** Builds the gateway's HTTP app on the given services. */
export function createApp(services: Services, options: AppOptions): Hono<GatewayEnv> {
  const { store, config } = services;
  const { logger } = options;
  const app = new Hono<GatewayEnv>();

  app.use(async function requestLog(c, next) {
    const requestId = c.req.header("x-request-id")?.slice(0, 100) || crypto.randomUUID();
    c.set("requestId", requestId);
    const started = performance.now();
    await next();
    c.header("x-request-id", requestId);
    logger.info("Request handled", {
      request_id: requestId,
      method: c.req.method,
      path: c.req.path,
      status: c.res.status,
      ms: Math.round(performance.now() - started),
    });
  });

  if (config.corsOrigins.length > 0) {
    app.use(cors({
      origin: [...config.corsOrigins],
      allowHeaders: ["Authorization", "Content-Type", "X-Conversation-Id", "X-OpenWebUI-Chat-Id"],
      allowMethods: ["GET", "POST", "OPTIONS"],
      exposeHeaders: ["X-Request-Id"],
      maxAge: 600,
    }));
  }
  app.use(apiKeyAuth({ keys: config.apiKeys }));
  const limitBody = bodyLimit({
    maxSize: config.maxBodyBytes,
    onError: () => {
      throw new ApiError(
        413,
        `Request body too large: over MAX_BODY_BYTES (${config.maxBodyBytes})`,
        {
          code: "body_too_large",
          param: "body",
        },
      );
    },
  });
  app.use(async function limitPostBodies(c, next) {
    return c.req.method === "POST" ? await limitBody(c, next) : await next();
  });

  app.get("/healthz", async (c) => c.json(await health(services)));

  app.post("/chat", async (c) => {
    const request = parseChatRequest(await readJson(c.req.raw));
    const accepted = await submitChat(services, request, c.get("owner"));
    logger.info("Job accepted", {
      request_id: c.get("requestId"),
      job_id: accepted.job_id,
      route: accepted.route,
      priority: accepted.priority,
      waiting_behind: accepted.waiting_behind,
    });
    return c.json(accepted, 202);
  });

  app.get("/conversation", async (c) => {
    const conversationId = c.req.query("conversation_id")?.trim();
    if (!conversationId) {
      throw invalidRequest([{
        param: "conversation_id",
        message: "is required as a query parameter",
      }]);
    }
    const conversation = await store.getConversation(
      scopedConversationId(c.get("owner"), conversationId),
    );
    if (!conversation) {
      throw new ApiError(404, `Conversation not found: "${conversationId}"`, {
        param: "conversation_id",
      });
    }
    return c.json({ ...conversation, conversation_id: conversationId });
  });

  app.get("/jobs/:job_id", async (c) => {
    const jobId = c.req.param("job_id");
    const waitSeconds = parseWait(c.req.query("wait"), config.syncTimeoutMs / 1000);
    let job = await ownJob(store, jobId, c.get("owner"));
    if (!job) throw jobNotFound(jobId);
    if (waitSeconds > 0) {
      job = await waitForJobEnd(store, jobId, {
        timeoutMs: waitSeconds * 1000,
        signal: c.req.raw.signal,
      }) ?? job;
    }
    return c.json(jobView(job));
  });

  app.post("/jobs/:job_id/cancel", async (c) => {
    const jobId = c.req.param("job_id");
    const job = await ownJob(store, jobId, c.get("owner"));
    if (!job) throw jobNotFound(jobId);
    const canceled = await store.cancelJob(jobId);
    if (!canceled) {
      const now = await store.getJob(jobId) ?? job;
      throw new ApiError(
        409,
        `Cannot cancel job: it is ${now.status}; only a queued job can be canceled`,
        {
          code: "not_cancelable",
          param: "job_id",
        },
      );
    }
    logger.info("Job canceled", { request_id: c.get("requestId"), job_id: jobId });
    return c.json(jobView(canceled));
  });

  addOpenAiRoutes(app, services, { logger, readJson });

  app.notFound((c) => c.json(notFoundBody(c.req.method, c.req.path), 404));
  app.onError(errorHandler(logger));
  return app;
}

function jobNotFound(jobId: string): ApiError {
  return new ApiError(404, `Job not found: "${jobId}"`, { param: "job_id" });
}

/** `?wait=N`: whole seconds from 0 up to the sync timeout. */
function parseWait(value: string | undefined, maxSeconds: number): number {
  if (value === undefined || value === "") return 0;
  const seconds = Number(value);
  if (!Number.isInteger(seconds) || seconds < 0 || seconds > maxSeconds) {
    throw invalidRequest([{
      param: "wait",
      message: `must be a whole number of seconds from 0 to ${maxSeconds}`,
    }]);
  }
  return seconds;
}

/** Reads a JSON body, or throws a 400 naming the syntax error. */
export async function readJson(request: Request): Promise<unknown> {
  const text = await request.text();
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ApiError(400, `Invalid JSON body: ${errorMessage(err)}`, {
      code: "invalid_json",
      param: "body",
    });
  }
}
