/** The front door: a Hono app that routes chat messages onto the queue. It never sees a runtime. */
import { Hono } from "hono";
import { cors } from "hono/cors";
import type { Logger } from "../core/log.ts";
import type { Services } from "../core/services.ts";
import { hasApiKeys } from "../core/config.ts";
import { retryDeadLetters } from "./admin_routes.ts";
import { adminKeyAuth, apiKeyAuth } from "./auth.ts";
import { limitPostBodies } from "./body_limit.ts";
import { limitBodyReadTime } from "./body_timeout.ts";
import { limitLargeBodies } from "./large_bodies.ts";
import { getConversation, postChat } from "./chat_routes.ts";
import { CONSOLE_PATHS, consoleFile } from "./console_routes.ts";
import { createEmbeddings } from "./embeddings_routes.ts";
import { errorHandler, failureBody } from "./error_handler.ts";
import { ApiError, notFoundBody } from "./errors.ts";
import { getHealth } from "./health_route.ts";
import type { GatewayEnv } from "./http_context.ts";
import { jobStats, listJobs } from "./job_list_routes.ts";
import { cancelJob, getJob } from "./job_routes.ts";
import { requireJsonBodies } from "./json_body.ts";
import { refuseMalformedHost } from "./host_header.ts";
import { guardLocalGateway } from "./local_guard.ts";
import { getMetrics } from "./metrics_route.ts";
import { rateLimitHeaders } from "./key_limits.ts";
import { getUsage } from "./usage_route.ts";
import { createCompletion, listModels } from "./openai_routes.ts";
import { countTokens, createMessage } from "./anthropic_routes.ts";
import { countRequests, RequestCounts } from "./request_metrics.ts";
import { requestLog } from "./request_log.ts";
import { createResponse, deleteResponse, getResponse } from "./responses_routes.ts";

/** Options for {@linkcode createApp}. */
export interface AppOptions {
  logger: Logger;
  /**
   * Whether a response can reach the client while it is written. False behind
   * API Gateway's HTTP API, which hands the client the whole response at once:
   * a streamed completion is then not streamed by the worker either, so no
   * reply-so-far is written and read for nothing. Default true.
   */
  streamsResponses?: boolean;
}

/** Builds the gateway's HTTP app on the given services. */
export function createApp(services: Services, options: AppOptions): Hono<GatewayEnv> {
  const { config } = services;
  const deps = {
    services,
    logger: options.logger,
    streamsResponses: options.streamsResponses ?? true,
  };
  const app = new Hono<GatewayEnv>();
  const requests = new RequestCounts();

  app.use(requestLog({ logger: options.logger }));
  app.use(countRequests(requests));
  app.use(refuseMalformedHost());
  // Without keys, anything that can reach the gateway may use it: web pages too, unless refused here.
  if (!hasApiKeys(config)) {
    app.use(guardLocalGateway({
      allowedHosts: config.allowedHosts,
      corsOrigins: config.corsOrigins,
    }));
  }
  if (config.corsOrigins.length > 0) {
    app.use(cors({
      origin: [...config.corsOrigins],
      allowHeaders: [
        "Authorization",
        "Content-Type",
        // Anthropic's clients: their key header, and the version and beta headers they always send.
        "x-api-key",
        "anthropic-version",
        "anthropic-beta",
        "X-Conversation-Id",
        "X-OpenWebUI-Chat-Id",
        "X-OpenWebUI-Task",
      ],
      allowMethods: ["GET", "POST", "DELETE", "OPTIONS"],
      exposeHeaders: ["X-Request-Id"],
      maxAge: 600,
    }));
  }
  // Admin keys are API keys too, once keys are required at all.
  const keysRequired = hasApiKeys(config);
  app.use(apiKeyAuth({
    keys: keysRequired ? [...config.apiKeys, ...config.adminKeys] : [],
    digests: keysRequired ? [...config.apiKeyDigests, ...config.adminKeyDigests] : [],
    openPaths: ["/healthz", ...CONSOLE_PATHS],
    known: config.keys,
  }));
  app.use(rateLimitHeaders({ services, skipPaths: CONSOLE_PATHS }));
  app.use("/admin/*", adminKeyAuth({ keys: config.adminKeys, digests: config.adminKeyDigests }));
  app.use(limitBodyReadTime({ timeoutMs: config.bodyTimeoutMs, variable: "BODY_TIMEOUT_S" }));
  // A large body waits for a place at most half its deadline, leaving the other half to arrive.
  app.use(limitLargeBodies({
    maxBodies: config.maxLargeBodies,
    variable: "MAX_LARGE_BODIES",
    waitMs: config.bodyTimeoutMs / 2,
  }));
  app.use(limitPostBodies({ maxBytes: config.maxBodyBytes, variable: "MAX_BODY_BYTES" }));

  const json = requireJsonBodies();
  app.get("/", consoleFile("page"));
  app.get("/console.js", consoleFile("script"));
  app.get("/console_chat.js", consoleFile("chat"));
  app.get("/charts.js", consoleFile("charts"));
  app.get("/console.css", consoleFile("style"));
  app.get("/healthz", getHealth(deps));
  app.get("/metrics", getMetrics(deps, requests));
  app.post("/chat", json, postChat(deps));
  app.get("/conversation", getConversation(deps));
  app.get("/jobs/:job_id", getJob(deps));
  app.post("/jobs/:job_id/cancel", json, cancelJob(deps));
  app.get("/v1/models", listModels(deps));
  app.post("/v1/chat/completions", json, createCompletion(deps));
  app.post("/v1/messages", json, createMessage(deps));
  app.post("/v1/messages/count_tokens", json, countTokens(deps));
  app.post("/v1/responses", json, createResponse(deps));
  app.get("/v1/responses/:response_id", getResponse(deps));
  app.delete("/v1/responses/:response_id", deleteResponse(deps));
  app.post("/v1/embeddings", json, createEmbeddings(deps));
  app.get("/v1/jobs", listJobs(deps));
  app.get("/v1/jobs/stats", jobStats(deps));
  app.get("/v1/usage", getUsage(deps));
  app.post("/admin/dead-letters/retry", json, retryDeadLetters(deps));
  refuseOtherMethods(app);

  app.notFound((c) => {
    const body = notFoundBody(c.req.method, c.req.path);
    return c.json(failureBody({ status: 404, body }, c.req.path, c.get("requestId")), 404);
  });
  app.onError(errorHandler(options.logger));
  return app;
}

/**
 * Answers a known path asked with a method it does not take (`GET /chat`)
 * with a 405 that says which to use, rather than a 404 "no route". Registered
 * after every route, so a path's own handlers answer first.
 */
function refuseOtherMethods(app: Hono<GatewayEnv>): void {
  const methods = new Map<string, Set<string>>();
  for (const { method, path } of app.routes) {
    if (method === "ALL") continue;
    const allowed = methods.get(path) ?? new Set<string>();
    allowed.add(method);
    if (method === "GET") allowed.add("HEAD");
    methods.set(path, allowed);
  }
  for (const [path, allowed] of methods) {
    const use = [...allowed].filter((m) => m !== "HEAD").join(" or ");
    app.all(path, () => {
      throw new ApiError(
        405,
        `Method not allowed: ${path} takes ${use}; send the request as ${use}`,
        {
          code: "method_not_allowed",
          headers: { allow: [...allowed].join(", ") },
        },
      );
    });
  }
}
