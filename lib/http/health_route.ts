/** `GET /healthz`: whether the gateway can reach its queue and store, without a key. */
import type { Handler } from "hono";
import { hasApiKeys } from "../core/config.ts";
import type { GatewayEnv } from "./http_context.ts";
import type { RouteDeps } from "./route_deps.ts";
import { health } from "./worker_status.ts";

/**
 * Answers 200 with "ok" or "degraded"; it never fails. The queues' depths and
 * the worker's heartbeat are shown when no keys are configured or a valid key
 * is sent; why the store or queue failed goes to the log only.
 */
export function getHealth({ services, logger }: RouteDeps): Handler<GatewayEnv> {
  return async function handleGetHealth(c) {
    const { error, ...report } = await health(services);
    if (error) logger.error("Health check failed", { request_id: c.get("requestId"), error });
    const detailed = !hasApiKeys(services.config) || c.get("owner") !== undefined;
    return c.json(detailed ? report : { status: report.status });
  };
}
