/**
 * OpenAI's Responses API, for the Agents SDK, Codex-style agents and the AI
 * SDK's OpenAI provider: `POST /v1/responses` makes a chat job any
 * OpenAI-compatible backend runs, and answers with a `response` object or
 * its event stream; `GET` and `DELETE /v1/responses/{id}` read and delete a
 * stored one. The state is the gateway's: a response is its job's record.
 */
import type { Handler } from "hono";
import { streamSSE } from "hono/streaming";
import { isFinished } from "../core/store.ts";
import { ApiError, invalidRequest } from "./errors.ts";
import { clientFailure } from "./error_handler.ts";
import type { GatewayEnv } from "./http_context.ts";
import { IDEMPOTENCY_HEADER, idempotencyClaim, REPLAYED_HEADER } from "./idempotency.ts";
import { replyWait, waitForJobEnd } from "./job_wait.ts";
import { restarted } from "./openai_routes.ts";
import type { RouteDeps } from "./route_deps.ts";
import { storedFacts, storedResponse, withReferencedItems } from "./responses_history.ts";
import { responseJobSpec, responseRecord } from "./responses_jobs.ts";
import { jobResponse, type ResponseFacts, responseId } from "./responses_objects.ts";
import { parseResponsesRequest } from "./responses_request.ts";
import { type ResponseEvent, ResponseEvents } from "./responses_stream.ts";
import { submitJob } from "./submit.ts";
import { readJson } from "./validation.ts";

/**
 * `POST /v1/responses`: queues the request as a job and answers with the
 * response when it ends, whole or as the Responses event stream.
 */
export function createResponse(
  { services, logger, streamsResponses = true }: RouteDeps,
): Handler<GatewayEnv> {
  const { config, store } = services;
  return async function handleCreateResponse(c) {
    const body = await readJson(c.req.raw);
    const owner = c.get("owner");
    const request = parseResponsesRequest(await withReferencedItems(services, body, owner));
    const idempotency = await idempotencyClaim({
      key: c.req.header(IDEMPOTENCY_HEADER),
      owner,
      route: c.req.path,
      body,
    });
    const spec = await responseJobSpec(services, request, owner);
    // Where responses are buffered anyway, the worker need not stream the reply into the store.
    spec.recordFields = { ...spec.recordFields, stream: request.stream && streamsResponses };
    const { accepted, replayed } = await submitJob(services, { ...spec, idempotency });
    if (replayed) c.header(REPLAYED_HEADER, "true");
    logger.info(replayed ? "Response repeated" : "Response accepted", {
      request_id: c.get("requestId"),
      job_id: accepted.job_id,
      route: accepted.route,
      history: request.conversation !== undefined
        ? "conversation"
        : request.previousResponseId
        ? "previous_response"
        : "none",
      stream: request.stream,
      store: request.store,
    });
    const facts: ResponseFacts = {
      jobId: accepted.job_id,
      createdAt: Math.floor(Date.now() / 1000),
      model: accepted.model,
      instructions: request.instructions ?? null,
      params: request.params,
      record: responseRecord(request),
      conversation: request.conversation,
    };
    const { wait, finished } = replyWait(accepted.job_id, {
      timeoutMs: config.syncTimeoutMs,
      env: c.env,
      signal: c.req.raw.signal,
    });

    if (!request.stream) {
      const job = finished(await waitForJobEnd(store, accepted.job_id, wait));
      return c.json(jobResponse(facts, job));
    }
    return streamSSE(c, async (stream) => {
      const events = new ResponseEvents(facts, () => restarted(accepted.job_id));
      const send = async (list: ResponseEvent[]) => {
        for (const event of list) {
          await stream.writeSSE({ event: event.type, data: JSON.stringify(event) });
        }
      };
      await send(events.start());
      try {
        const last = await waitForJobEnd(store, accepted.job_id, {
          ...wait,
          onChange: async (job) => {
            if (job.status !== "running") return;
            await send(events.progress(job.partial ?? "", job.partial_reasoning ?? ""));
          },
          onQuiet: {
            everyMs: config.streamKeepAliveMs,
            call: async (job) => {
              await stream.write(job?.status === "running" ? ": running\n\n" : ": queued\n\n");
            },
          },
        });
        await send(events.finish(finished(last)));
      } catch (err) {
        // The status is sent already: the failure is the stream's last event, as OpenAI's is.
        const { body } = clientFailure(err, { logger, requestId: c.get("requestId") });
        await send(events.fail({
          code: body.error.code ?? "server_error",
          message: body.error.message,
        }));
      }
    });
  };
}

/** `GET /v1/responses/{id}`: the caller's stored response, as it stands. */
export function getResponse({ services }: RouteDeps): Handler<GatewayEnv> {
  return async function handleGetResponse(c) {
    if (c.req.query("stream") === "true") {
      throw invalidRequest([{
        param: "stream",
        message: "a stored response is not streamed again: read it whole, without stream",
      }]);
    }
    const job = await storedResponse(services, c.req.param("response_id"), {
      owner: c.get("owner"),
      param: "response_id",
    });
    return c.json(jobResponse(await storedFacts(job, services.blobs), job));
  };
}

/** `DELETE /v1/responses/{id}`: deletes the caller's stored response, once it has ended. */
export function deleteResponse({ services, logger }: RouteDeps): Handler<GatewayEnv> {
  return async function handleDeleteResponse(c) {
    const job = await storedResponse(services, c.req.param("response_id"), {
      owner: c.get("owner"),
      param: "response_id",
    });
    const id = responseId(job.job_id);
    if (!isFinished(job) || !await services.store.deleteJob(job.job_id)) {
      throw new ApiError(
        409,
        `Cannot delete response "${id}": it has not ended; wait for it, then delete it`,
        { param: "response_id", code: "response_in_progress" },
      );
    }
    logger.info("Response deleted", { request_id: c.get("requestId"), job_id: job.job_id });
    return c.json({ id, object: "response", deleted: true });
  };
}
