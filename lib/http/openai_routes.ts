/**
 * OpenAI-compatible routes, for Open WebUI, the `openai` SDKs and curl:
 * `GET /v1/models` and `POST /v1/chat/completions`, through the same queue
 * and worker as `POST /chat`.
 */
import type { Handler } from "hono";
import { streamSSE } from "hono/streaming";
import { type JobSpec, submitJob } from "./submit.ts";
import { ApiError, type FieldProblem, invalidRequest } from "./errors.ts";
import { clientFailure } from "./error_handler.ts";
import type { GatewayEnv } from "./http_context.ts";
import { replyWait, waitForJobEnd } from "./job_wait.ts";
import { type ChatMessage, replyMessage } from "../core/messages.ts";
import {
  type ChunkDelta,
  chunkObject,
  completionObject,
  modelList,
  usageChunk,
} from "./completion_objects.ts";
import {
  backendFieldProblems,
  type CompletionRequest,
  parseCompletionRequest,
} from "./completion_request.ts";
import { type ChatIdentity, identifyChat } from "./chat_identity.ts";
import { ModelDirectory, type Target } from "./model_directory.ts";
import { IDEMPOTENCY_HEADER, idempotencyClaim, REPLAYED_HEADER } from "./idempotency.ts";
import { idProblem } from "./request_fields.ts";
import type { RouteDeps } from "./route_deps.ts";
import { readJson } from "./validation.ts";

/**
 * `GET /v1/models`: the models the live workers' backends serve, one entry
 * each, owned by the backend's name; with no live worker, the configured
 * defaults, and `catalogue` says which.
 */
export function listModels({ services }: RouteDeps): Handler<GatewayEnv> {
  return async function handleListModels(c) {
    const directory = await ModelDirectory.read(services);
    const models = directory.models().map((m) => ({
      id: m.id,
      owned_by: m.backend.name,
      created: m.created,
      capabilities: m.capabilities,
    }));
    return c.json(modelList(models, { catalogue: directory.source }));
  };
}

/**
 * `POST /v1/chat/completions`: queues the request as a job and answers with
 * its reply when it ends, whole or streamed as server-sent events.
 */
export function createCompletion(
  { services, logger, streamsResponses = true }: RouteDeps,
): Handler<GatewayEnv> {
  const { config, store } = services;
  return async function handleCreateCompletion(c) {
    const body = await readJson(c.req.raw);
    const request = parseCompletionRequest(body);
    const identity = identifyChat((name) => c.req.header(name), request);
    if (identity.kind === "conversation") {
      const problem = idProblem(identity.conversationId);
      if (problem) throw invalidRequest([{ param: identity.header, message: problem }]);
    }
    const owner = c.get("owner");
    const idempotency = await idempotencyClaim({
      key: c.req.header(IDEMPOTENCY_HEADER),
      owner,
      route: c.req.path,
      body,
    });
    // Where responses are buffered anyway, the worker need not stream the reply into the store.
    const workerStreams = request.stream && streamsResponses;
    const { accepted, replayed } = await submitJob(services, {
      ...jobSpec({ ...request, stream: workerStreams }, identity, owner),
      idempotency,
    });
    if (replayed) c.header(REPLAYED_HEADER, "true");
    logger.info(replayed ? "Completion repeated" : "Completion accepted", {
      request_id: c.get("requestId"),
      job_id: accepted.job_id,
      route: accepted.route,
      history: identity.kind === "conversation" ? identity.header : identity.reason,
      stream: request.stream,
    });
    const id = `chatcmpl-${accepted.job_id}`;
    const model = request.model ?? accepted.model;
    const { wait, finished } = replyWait(accepted.job_id, {
      timeoutMs: config.syncTimeoutMs,
      env: c.env,
      signal: c.req.raw.signal,
    });

    if (!request.stream) {
      const job = finished(await waitForJobEnd(store, accepted.job_id, wait));
      return c.json(
        completionObject({
          id,
          model,
          message: replyMessage(job.reply, job.reply_message),
          finishReason: job.finish_reason,
          usage: job.usage,
        }),
      );
    }
    return streamSSE(c, async (stream) => {
      const created = Math.floor(Date.now() / 1000);
      const send = (delta: ChunkDelta, finishReason: string | null = null) =>
        stream.writeSSE({
          data: JSON.stringify(chunkObject({ id, model, created, delta, finishReason })),
        });
      await send({ role: "assistant", content: "" });
      const sent = { content: "", reasoning: "" };
      /** Passes on what the reply gained; a retried attempt that starts again cannot be taken back. */
      const passOn = async (content: string, reasoning: string) => {
        if (!content.startsWith(sent.content) || !reasoning.startsWith(sent.reasoning)) {
          throw restarted(accepted.job_id);
        }
        if (reasoning.length > sent.reasoning.length) {
          await send({ reasoning: reasoning.slice(sent.reasoning.length) });
          sent.reasoning = reasoning;
        }
        if (content.length > sent.content.length) {
          await send({ content: content.slice(sent.content.length) });
          sent.content = content;
        }
      };
      try {
        const last = await waitForJobEnd(store, accepted.job_id, {
          ...wait,
          onChange: async (job) => {
            if (job.status !== "running") return;
            const content = job.partial ?? "";
            const reasoning = job.partial_reasoning ?? "";
            // A new attempt begins from nothing: wait for it to pass what was sent.
            const behind = (now: string, before: string) =>
              now.length < before.length && before.startsWith(now);
            if (
              behind(content, sent.content) ||
              (content === sent.content && behind(reasoning, sent.reasoning))
            ) return;
            await passOn(content, reasoning);
          },
          onQuiet: {
            everyMs: config.streamKeepAliveMs,
            call: async (job) => {
              await stream.write(job?.status === "running" ? ": running\n\n" : ": queued\n\n");
            },
          },
        });
        const job = finished(last);
        const reply = replyMessage(job.reply, job.reply_message);
        await passOn(
          typeof reply.content === "string" ? reply.content : job.reply ?? "",
          reply.reasoning_content ?? "",
        );
        if (reply.tool_calls?.length) {
          await send({
            tool_calls: reply.tool_calls.map((call, index) => ({ index, ...call })),
          });
        }
        await send({}, job.finish_reason ?? "stop");
        if (request.includeUsage && job.usage) {
          await stream.writeSSE({
            data: JSON.stringify(usageChunk({ id, model, created, usage: job.usage })),
          });
        }
      } catch (err) {
        // The status is sent already: the error goes as the stream's last event, as OpenAI's does.
        const { body } = clientFailure(err, { logger, requestId: c.get("requestId") });
        await stream.writeSSE({ data: JSON.stringify(body) });
      }
      await stream.writeSSE({ data: "[DONE]" });
    });
  };
}

/** The error for a streamed reply that began again after a failed attempt. */
export function restarted(jobId: string): ApiError {
  return new ApiError(
    502,
    `The backend's answer was restarted after a failed attempt; read the full reply with GET /jobs/${jobId}`,
    { code: "stream_restarted", jobId },
  );
}

/**
 * The job for a completion request, by where its history lives:
 * - `X-OpenWebUI-Chat-Id` ("synced"): the client sends the whole chat every
 *   time, and that is what the backend gets; the stored conversation becomes
 *   what it sent plus the reply, so edits, regenerations and deletions show.
 * - `X-Conversation-Id` ("conversation"): the gateway's memory. The stored
 *   history is used and only the last message is new; leading system messages
 *   still go to the model.
 * - Neither, a temporary chat or a background task ("stateless"): the request
 *   stands alone, as OpenAI's API does, and nothing is stored.
 */
function jobSpec(
  request: CompletionRequest,
  identity: ChatIdentity,
  owner: string | undefined,
): JobSpec {
  const userMessage = request.messages.at(-1)!;
  const common = {
    owner,
    userMessage,
    priority: "normal" as const,
    model: request.model,
    checkTarget: (target: Target) => {
      const problems = backendFieldProblems(
        target.backend.kind,
        target.backend.name,
        request.params,
      );
      if (problems.length > 0) throw invalidRequest(problems);
    },
  };
  const fields = {
    params: request.params,
    stream: request.stream,
    api: "chat.completions" as const,
  };
  if (identity.kind === "conversation" && identity.header === "x-conversation-id") {
    const problems = memoryModeProblems(request.messages);
    if (problems.length > 0) throw invalidRequest(problems);
    return {
      ...common,
      conversationId: identity.conversationId,
      recordFields: { ...fields, context: leadingSystemMessages(request.messages) },
    };
  }
  if (identity.kind === "conversation") {
    return {
      ...common,
      conversationId: identity.conversationId,
      recordFields: { ...fields, mode: "synced", context: request.messages.slice(0, -1) },
    };
  }
  return {
    ...common,
    conversationId: `openai/${crypto.randomUUID()}`,
    recordFields: { ...fields, mode: "stateless", context: request.messages.slice(0, -1) },
  };
}

/**
 * With the gateway's memory one message a turn is new, and the stored history
 * holds the rest, so two cases cannot be told apart from a re-sent history and
 * are refused rather than stored wrong: several tool results at once (the
 * earlier ones would be dropped) and a continue (the stored reply and the sent
 * part of it would both stay).
 */
function memoryModeProblems(messages: readonly ChatMessage[]): FieldProblem[] {
  const last = messages.length - 1;
  const whole = "send the whole chat without X-Conversation-Id (or with X-OpenWebUI-Chat-Id)";
  if (messages[last].role === "assistant") {
    return [{
      param: `messages[${last}]`,
      message: `a last message from the assistant (continue) needs the chat it continues: ${whole}`,
    }];
  }
  if (messages[last].role === "tool" && messages[last - 1]?.role === "tool") {
    return [{
      param: `messages[${last - 1}]`,
      message:
        `with X-Conversation-Id one message a turn is new, and this request ends with several tool results: send them one a request, set parallel_tool_calls to false, or ${whole}`,
    }];
  }
  return [];
}

/** The system prompt: the system messages a chat starts with, never its last message. */
export function leadingSystemMessages(messages: readonly ChatMessage[]): ChatMessage[] {
  const end = messages.findIndex((m) => m.role !== "system");
  return messages.slice(0, end < 0 ? messages.length : end).slice(0, messages.length - 1);
}
