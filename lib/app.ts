/** The front door: a Hono app that routes chat messages onto the queue. It never sees a runtime. */
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { apiKeyAuth } from "./auth.ts";
import { parseChatRequest } from "./chat_request.ts";
import { health, submitChat } from "./chat_service.ts";
import { ApiError, errorHandler, invalidRequest, notFoundBody } from "./errors.ts";
import type { Logger } from "./log.ts";
import type { Services } from "./services.ts";

type Env = { Variables: { requestId: string } };

/** Options for {@linkcode createApp}. */
export interface AppOptions {
  logger: Logger;
}

/** Builds the gateway's HTTP app on the given services. */
export function createApp(services: Services, options: AppOptions): Hono<Env> {
  const { store, config } = services;
  const { logger } = options;
  const app = new Hono<Env>();

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

  app.use(apiKeyAuth({ keys: config.apiKeys }));

  app.get("/healthz", async (c) => c.json(await health(services)));

  app.post(
    "/chat",
    bodyLimit({
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
    }),
    async (c) => {
      const accepted = await submitChat(services, parseChatRequest(await readJson(c.req.raw)));
      logger.info("Job accepted", {
        request_id: c.get("requestId"),
        job_id: accepted.job_id,
        conversation_id: accepted.conversation_id,
        route: accepted.route,
        priority: accepted.priority,
        waiting_behind: accepted.waiting_behind,
      });
      return c.json(accepted, 202);
    },
  );

  app.get("/conversation", async (c) => {
    const conversationId = c.req.query("conversation_id")?.trim();
    if (!conversationId) {
      throw invalidRequest([{
        param: "conversation_id",
        message: "is required as a query parameter",
      }]);
    }
    const conversation = await store.getConversation(conversationId);
    if (!conversation) {
      throw new ApiError(404, `Conversation not found: "${conversationId}"`, {
        param: "conversation_id",
      });
    }
    return c.json(conversation);
  });

  app.get("/jobs/:job_id", async (c) => {
    const jobId = c.req.param("job_id");
    const job = await store.getJob(jobId);
    if (!job) throw new ApiError(404, `Job not found: "${jobId}"`, { param: "job_id" });
    return c.json(job);
  });

  app.notFound((c) => c.json(notFoundBody(c.req.method, c.req.path), 404));
  app.onError(errorHandler(logger));
  return app;
}

async function readJson(request: Request): Promise<unknown> {
  const text = await request.text();
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ApiError(400, `Invalid JSON body: ${(err as Error).message}`, {
      code: "invalid_json",
      param: "body",
    });
  }
}
