/** `GET /healthz`: queue depths and the worker's heartbeat, without a key. */
import type { Handler } from "hono";
import type { GatewayEnv } from "./http_context.ts";
import type { RouteDeps } from "./route_deps.ts";
import { health } from "./worker_status.ts";

/** Answers 200 with the gateway's health; it never fails. */
export function getHealth({ services }: RouteDeps): Handler<GatewayEnv> {
  return async function handleGetHealth(c) {
    return c.json(await health(services));
  };
}
