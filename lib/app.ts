/** The front door: a Hono app that routes chat messages onto the queue. It never sees a runtime. */
import { Hono } from "hono";
import { apiKeyAuth } from "./auth.ts";
import { chooseBackend } from "./backends.ts";
import { parseChatRequest } from "./chat_request.ts";
import { ApiError, errorHandler, invalidRequest, notFoundBody } from "./errors.ts";
import { newJob, ticketFor } from "./jobs.ts";
import type { Logger } from "./log.ts";
import { userMessage } from "./messages.ts";
import { laneFor } from "./queue.ts";
import type { Services } from "./services.ts";

type Env = { Variables: { requestId: string } };

/** Options for {@linkcode createApp}. */
export interface AppOptions {
  logger: Logger;
}

/** Builds the gateway's HTTP app on the given services. */
export function createApp(services: Services, options: AppOptions): Hono<Env> {
  const { store, queue, backends, config } = services;
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

  app.get("/healthz", (c) => c.json({ status: "ok" }));

  app.post("/chat", async (c) => {
    const request = parseChatRequest(await readJson(c.req.raw));
    const conversation = await store.getConversation(request.conversationId);
    const backend = chooseBackend(backends, request.imageUrls.length > 0);
    const job = newJob({
      conversationId: request.conversationId,
      route: backend.name,
      model: backend.model,
      priority: request.priority,
      userMessage: userMessage(request.userMessage, request.imageUrls),
      ttlDays: config.jobTtlDays,
    });
    await store.createJob(job);
    try {
      await queue.send(laneFor(job.priority), ticketFor(job));
    } catch (err) {
      const reason = `Could not be enqueued: ${(err as Error).message}`;
      await store.failJob(job.job_id, reason);
      throw new ApiError(503, `Cannot enqueue job: ${(err as Error).message}`, { cause: err });
    }
    logger.info("Job queued", {
      request_id: c.get("requestId"),
      job_id: job.job_id,
      conversation_id: job.conversation_id,
      route: job.route,
      priority: job.priority,
    });
    return c.json({
      job_id: job.job_id,
      conversation_id: job.conversation_id,
      status: job.status,
      route: job.route,
      model: job.model,
      priority: job.priority,
      history_messages: conversation?.messages.length ?? 0,
    }, 202);
  });

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
