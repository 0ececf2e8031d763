/** The job API's chat routes: `POST /chat` and `GET /conversation`. */
import type { Handler } from "hono";
import { scopedConversationId } from "../core/owners.ts";
import { parseChatRequest } from "./chat_request.ts";
import { idProblem } from "./request_fields.ts";
import { ApiError, invalidRequest } from "./errors.ts";
import type { GatewayEnv } from "./http_context.ts";
import type { RouteDeps } from "./route_deps.ts";
import { IDEMPOTENCY_HEADER, idempotencyClaim, REPLAYED_HEADER } from "./idempotency.ts";
import { submitChat } from "./submit.ts";
import { readJson } from "./validation.ts";

/** `POST /chat`: checks the message, writes the job and queues it; answers 202. */
export function postChat({ services, logger }: RouteDeps): Handler<GatewayEnv> {
  return async function handlePostChat(c) {
    const body = await readJson(c.req.raw);
    const request = parseChatRequest(body, {
      callbackAllowedHosts: services.config.callbackAllowedHosts,
    });
    const owner = c.get("owner");
    const idempotency = await idempotencyClaim({
      key: c.req.header(IDEMPOTENCY_HEADER),
      owner,
      route: c.req.path,
      body,
    });
    const { accepted, replayed } = await submitChat(services, request, { owner, idempotency });
    logger.info(replayed ? "Job repeated" : "Job accepted", {
      request_id: c.get("requestId"),
      job_id: accepted.job_id,
      route: accepted.route,
      priority: accepted.priority,
      waiting_behind: accepted.waiting_behind,
    });
    return c.json(accepted, 202, replayed ? { [REPLAYED_HEADER]: "true" } : {});
  };
}

/** `GET /conversation?conversation_id=`: the caller's stored conversation. */
export function getConversation({ services }: RouteDeps): Handler<GatewayEnv> {
  return async function handleGetConversation(c) {
    const conversationId = c.req.query("conversation_id")?.trim();
    if (!conversationId) {
      throw invalidRequest([{
        param: "conversation_id",
        message: "is required as a query parameter",
      }]);
    }
    const problem = idProblem(conversationId);
    if (problem) throw invalidRequest([{ param: "conversation_id", message: problem }]);
    const conversation = await services.store.getConversation(
      scopedConversationId(c.get("owner"), conversationId),
    );
    if (!conversation) {
      throw new ApiError(404, `Conversation not found: "${conversationId}"`, {
        param: "conversation_id",
      });
    }
    const { latest_job_at: _latest, ...stored } = conversation;
    return c.json({ ...stored, conversation_id: conversationId });
  };
}
