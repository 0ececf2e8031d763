/**
 * OpenAI-compatible routes, for Open WebUI, the `openai` SDKs and curl:
 * `GET /v1/models` and `POST /v1/chat/completions`, through the same queue
 * and worker as `POST /chat`.
 */
import { errorMessage } from "../core/error_message.ts";
import type { Handler } from "hono";
import { type SSEStreamingApi, streamSSE } from "hono/streaming";
import type { Backend } from "../core/backends.ts";
import { type JobSpec, submitJob } from "./submit.ts";
import { ApiError, invalidRequest, toBody } from "./errors.ts";
import type { GatewayEnv } from "./http_context.ts";
import { waitForJobEnd } from "./job_wait.ts";
import type { Job } from "../core/jobs.ts";
import type { ChatMessage } from "../core/messages.ts";
import { chunkObject, completionObject, modelList } from "./completion_objects.ts";
import { type CompletionRequest, parseCompletionRequest } from "./completion_request.ts";
import type { RouteDeps } from "./route_deps.ts";
import { readJson } from "./validation.ts";

/** Headers that name a server-side conversation: ours, and the one Open WebUI sends. */
const CONVERSATION_HEADERS = ["x-conversation-id", "x-openwebui-chat-id"];

/** `GET /v1/models`: the configured models, one entry each. */
export function listModels({ services }: RouteDeps): Handler<GatewayEnv> {
  return function handleListModels(c) {
    const seen = new Set<string>();
    const models = services.backends.filter((b) => !seen.has(b.model) && seen.add(b.model))
      .map((b) => ({ id: b.model, owned_by: b.name }));
    return c.json(modelList(models));
  };
}

/**
 * `POST /v1/chat/completions`: queues the request as a job and answers with
 * its reply when it ends, whole or streamed as server-sent events.
 */
export function createCompletion(
  { services, logger, streamsResponses = true }: RouteDeps,
): Handler<GatewayEnv> {
  const { backends, config, store } = services;
  return async function handleCreateCompletion(c) {
    const request = parseCompletionRequest(await readJson(c.req.raw));
    const conversationId = conversationFromHeaders((name) => c.req.header(name));
    // Where responses are buffered anyway, the worker need not stream the reply into the store.
    const workerStreams = request.stream && streamsResponses;
    const accepted = await submitJob(
      services,
      jobSpec({ ...request, stream: workerStreams }, conversationId, backends, c.get("owner")),
    );
    logger.info("Completion accepted", {
      request_id: c.get("requestId"),
      job_id: accepted.job_id,
      route: accepted.route,
      stateful: conversationId !== undefined,
      stream: request.stream,
    });
    const id = `chatcmpl-${accepted.job_id}`;
    const model = request.model ?? accepted.model;
    const wait = { timeoutMs: config.syncTimeoutMs, signal: c.req.raw.signal };

    if (!request.stream) {
      const job = await waitForJobEnd(store, accepted.job_id, wait);
      return c.json(
        completionObject({
          id,
          model,
          content: finishedReply(job, accepted.job_id, config.syncTimeoutMs),
        }),
      );
    }
    return streamSSE(c, async (stream) => {
      const created = Math.floor(Date.now() / 1000);
      const send = (
        delta: { role?: "assistant"; content?: string },
        finishReason: string | null = null,
      ) =>
        stream.writeSSE({
          data: JSON.stringify(chunkObject({ id, model, created, delta, finishReason })),
        });
      await send({ role: "assistant", content: "" });
      let sent = "";
      const job = await waitForJobEnd(store, accepted.job_id, {
        ...wait,
        onChange: async (job) => {
          const text = job.status === "succeeded" ? job.reply ?? "" : job.partial ?? "";
          // A retried attempt starts its text again; only growth of what was sent is passed on.
          if (text.length > sent.length && text.startsWith(sent)) {
            await send({ content: text.slice(sent.length) });
            sent = text;
          }
        },
      });
      try {
        const reply = finishedReply(job, accepted.job_id, config.syncTimeoutMs);
        if (reply !== sent) {
          throw new ApiError(
            502,
            "The backend's answer was restarted after a failed attempt; read the full reply with GET /jobs/" +
              accepted.job_id,
            {
              code: "stream_restarted",
              jobId: accepted.job_id,
            },
          );
        }
        await send({}, "stop");
      } catch (err) {
        await sendError(stream, err);
      }
      await stream.writeSSE({ data: "[DONE]" });
    });
  };
}

/** The conversation a request names in its headers, if any. */
function conversationFromHeaders(header: (name: string) => string | undefined): string | undefined {
  for (const name of CONVERSATION_HEADERS) {
    const value = header(name)?.trim();
    if (!value) continue;
    if (value.length > 256) {
      throw invalidRequest([{ param: name, message: "must be at most 256 characters" }]);
    }
    return value;
  }
  return undefined;
}

/**
 * The job for a completion request. With a conversation, the server's history
 * is used and only the last message is new (the history a client re-sends is
 * not stored twice; its leading system messages still go to the model).
 * Without one, the request stands alone, as OpenAI's API does.
 */
function jobSpec(
  request: CompletionRequest,
  conversationId: string | undefined,
  backends: readonly Backend[],
  owner: string | undefined,
): JobSpec {
  const userMessage = request.messages.at(-1)!;
  const backend = request.model
    ? backends.find((b) => b.model === request.model || b.name === request.model)
    : undefined;
  const common = { owner, userMessage, priority: "normal" as const, backend };
  const fields = { params: request.params, stream: request.stream };
  if (conversationId) {
    return {
      ...common,
      conversationId,
      recordFields: { ...fields, context: leadingSystemMessages(request.messages) },
    };
  }
  return {
    ...common,
    conversationId: `openai/${crypto.randomUUID()}`,
    recordFields: { ...fields, mode: "stateless", context: request.messages.slice(0, -1) },
  };
}

function leadingSystemMessages(messages: readonly ChatMessage[]): ChatMessage[] {
  const end = messages.findIndex((m) => m.role !== "system");
  return messages.slice(0, end < 0 ? messages.length : end).slice(0, messages.length - 1);
}

/** The reply of a finished job, or the error that says why there is none. */
function finishedReply(job: Job | undefined, jobId: string, timeoutMs: number): string {
  if (job?.status === "succeeded") return job.reply ?? "";
  if (job?.status === "failed") {
    throw new ApiError(502, `Job failed: ${job.error ?? "no reason recorded"}`, {
      code: "job_failed",
      jobId,
    });
  }
  if (job?.status === "canceled") {
    throw new ApiError(409, "Job was canceled", { code: "job_canceled", jobId });
  }
  throw new ApiError(
    504,
    `Timed out after ${
      timeoutMs / 1000
    } s (SYNC_TIMEOUT_S) waiting for job ${jobId}; it goes on: read it with GET /jobs/${jobId}`,
    { code: "timeout", jobId },
  );
}

async function sendError(stream: SSEStreamingApi, err: unknown): Promise<void> {
  const apiError = err instanceof ApiError
    ? err
    : new ApiError(500, `Internal error: ${errorMessage(err)}`, { type: "api_error" });
  await stream.writeSSE({ data: JSON.stringify(toBody(apiError)) });
}
