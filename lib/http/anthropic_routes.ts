/**
 * Anthropic's Messages API, for Claude Code and the Anthropic SDKs:
 * `POST /v1/messages` and `POST /v1/messages/count_tokens`. A message runs
 * as a chat completion job on whichever backend serves its model, through
 * the same queues and workers as `POST /v1/chat/completions`; its errors take
 * Anthropic's shape (lib/http/anthropic_errors.ts).
 *
 * The Messages API is stateless: the client sends the whole chat each time,
 * and so the job is stateless and nothing is stored. `X-Conversation-Id`
 * asks for the gateway's memory instead, as on the completions route: the
 * stored history is used, and the last message is the only new one.
 */
import type { Handler } from "hono";
import { streamSSE } from "hono/streaming";
import type { Backend } from "../core/backends.ts";
import { hasImage } from "../core/messages.ts";
import { estimatePromptTokens } from "../core/usage_estimate.ts";
import { anthropicErrorBody } from "./anthropic_errors.ts";
import { anthropicUsage, finalReply, messageObject } from "./anthropic_objects.ts";
import { MessageStreamEncoder, type StreamEvent } from "./anthropic_stream.ts";
import {
  type MessagesRequest,
  parseCountRequest,
  parseMessagesRequest,
} from "./anthropic_translation.ts";
import { clientFailure } from "./error_handler.ts";
import { type FieldProblem, invalidRequest } from "./errors.ts";
import type { GatewayEnv } from "./http_context.ts";
import { IDEMPOTENCY_HEADER, idempotencyClaim, REPLAYED_HEADER } from "./idempotency.ts";
import { replyWait, waitForJobEnd } from "./job_wait.ts";
import { ModelDirectory, type Target } from "./model_directory.ts";
import { leadingSystemMessages } from "./openai_routes.ts";
import { idProblem } from "./request_fields.ts";
import type { RouteDeps } from "./route_deps.ts";
import { type JobSpec, submitJob } from "./submit.ts";
import { readJson } from "./validation.ts";

/** The header that asks for the gateway's memory of a conversation. */
const CONVERSATION_HEADER = "X-Conversation-Id";
/**
 * `POST /v1/messages`: queues the request as a job and answers with its
 * reply when it ends, as a `message` or streamed as Anthropic's events.
 */
export function createMessage(
  { services, logger, streamsResponses = true }: RouteDeps,
): Handler<GatewayEnv> {
  const { config, store } = services;
  return async function handleCreateMessage(c) {
    const body = await readJson(c.req.raw);
    const request = parseMessagesRequest(body);
    const conversationId = c.req.header(CONVERSATION_HEADER)?.trim() || undefined;
    if (conversationId !== undefined) {
      const problem = idProblem(conversationId);
      if (problem) throw invalidRequest([{ param: CONVERSATION_HEADER, message: problem }]);
    }
    const owner = c.get("owner");
    const requestId = c.get("requestId");
    const idempotency = await idempotencyClaim({
      key: c.req.header(IDEMPOTENCY_HEADER),
      owner,
      route: c.req.path,
      body,
    });
    // Where responses are buffered anyway, the worker need not stream the reply into the store.
    const workerStreams = request.stream && streamsResponses;
    const { accepted, replayed } = await submitJob(services, {
      ...jobSpec(request, { conversationId, owner, stream: workerStreams }),
      idempotency,
    });
    if (replayed) c.header(REPLAYED_HEADER, "true");
    // Anthropic's SDKs read the request id from this header.
    c.header("request-id", requestId);
    logger.info(replayed ? "Message repeated" : "Message accepted", {
      request_id: requestId,
      job_id: accepted.job_id,
      route: accepted.route,
      history: conversationId === undefined ? "stateless" : "x-conversation-id",
      stream: request.stream,
    });

    const id = `msg_${accepted.job_id}`;
    const backend = services.backends.find((b) => b.name === accepted.route);
    const stopShown = backend !== undefined && showsStop(backend, request);
    const replyOptions = { stopSequences: request.stopSequences, stopShown };
    const { wait, finished } = replyWait(accepted.job_id, {
      timeoutMs: config.syncTimeoutMs,
      env: c.env,
      signal: c.req.raw.signal,
    });

    if (!request.stream) {
      const job = finished(await waitForJobEnd(store, accepted.job_id, wait));
      return c.json(messageObject({
        id,
        model: request.model,
        reply: finalReply(job, replyOptions),
        showThinking: request.showThinking,
      }));
    }
    return streamSSE(c, async (stream) => {
      const write = async (events: readonly StreamEvent[]) => {
        for (const event of events) {
          await stream.writeSSE({ event: event.type, data: JSON.stringify(event) });
        }
      };
      const encoder = new MessageStreamEncoder({
        id,
        model: request.model,
        showThinking: request.showThinking,
        heldStops: stopShown ? request.stopSequences : [],
        jobId: accepted.job_id,
      });
      // The backend counts the input only as it answers: the start gives the gateway's estimate.
      const estimate = estimatePromptTokens(request.messages, request.params.tools);
      await write(encoder.start(anthropicUsage({ prompt_tokens: estimate, completion_tokens: 0 })));
      await write([{ type: "ping" }]);
      try {
        const last = await waitForJobEnd(store, accepted.job_id, {
          ...wait,
          onChange: async (job) => {
            if (job.status !== "running") return;
            await write(encoder.progress(job.partial ?? "", job.partial_reasoning ?? ""));
          },
          // A `ping` event, as Anthropic's stream sends one, so idle timeouts keep it open.
          onQuiet: { everyMs: config.streamKeepAliveMs, call: () => write([{ type: "ping" }]) },
        });
        await write(encoder.finish(finalReply(finished(last), replyOptions)));
      } catch (err) {
        // The status is sent already: the error goes as the stream's last event, as Anthropic's does.
        const failure = clientFailure(err, { logger, requestId });
        await stream.writeSSE({
          event: "error",
          data: JSON.stringify(anthropicErrorBody(failure, requestId)),
        });
      }
    });
  };
}

/**
 * `POST /v1/messages/count_tokens`: the gateway's estimate of the request's
 * input tokens (about four characters a token; lib/core/usage_estimate.ts),
 * for a model a backend serves. Nothing is queued: the backends have no
 * tokenizer route all of them serve.
 */
export function countTokens({ services }: RouteDeps): Handler<GatewayEnv> {
  return async function handleCountTokens(c) {
    const request = parseCountRequest(await readJson(c.req.raw));
    const directory = await ModelDirectory.read(services);
    // Answers an unknown model with the 404 a message to it would get.
    directory.route({ model: request.model, images: request.messages.some(hasImage) });
    c.header("request-id", c.get("requestId"));
    return c.json({ input_tokens: estimatePromptTokens(request.messages, request.tools) });
  };
}

/**
 * The job for a message request: stateless, with the chat before the last
 * message as its context; or, with `X-Conversation-Id`, in the gateway's
 * memory of that conversation, the system prompt sent before the stored
 * history.
 */
function jobSpec(
  request: MessagesRequest,
  options: { conversationId?: string; owner?: string; stream: boolean },
): JobSpec {
  const fields = { params: request.params, stream: options.stream, api: "messages" as const };
  const common = {
    owner: options.owner,
    userMessage: request.messages.at(-1)!,
    priority: "normal" as const,
    model: request.model,
    checkTarget: (target: Target) => {
      const problems = backendProblems(target.backend, request);
      if (problems.length > 0) throw invalidRequest(problems);
      // Read by submitJob once the target is chosen: only vLLM can keep the stop sequence.
      if (showsStop(target.backend, request)) request.params.include_stop_str_in_output = true;
      else delete request.params.include_stop_str_in_output;
    },
  };
  if (options.conversationId === undefined) {
    return {
      ...common,
      conversationId: `anthropic/${crypto.randomUUID()}`,
      recordFields: { ...fields, mode: "stateless", context: request.messages.slice(0, -1) },
    };
  }
  const problems = memoryModeProblems(request);
  if (problems.length > 0) throw invalidRequest(problems);
  return {
    ...common,
    conversationId: options.conversationId,
    recordFields: { ...fields, context: leadingSystemMessages(request.messages) },
  };
}

/**
 * Whether the backend is asked to keep a stop sequence that ends the reply,
 * so the answer can say which one it was: vLLM can
 * (`include_stop_str_in_output`); other servers drop it, and the reply then
 * reads as ended by the model (`end_turn`).
 */
function showsStop(backend: Backend, request: MessagesRequest): boolean {
  return backend.kind === "vllm" && request.stopSequences.length > 0;
}

/** What Ollama's OpenAI-compatible API would ignore, named before the job is queued. */
function backendProblems(backend: Backend, request: MessagesRequest): FieldProblem[] {
  if (backend.kind !== "ollama") return [];
  const problems: FieldProblem[] = [];
  const refuse = (param: string, why: string) =>
    problems.push({ param, message: `${why} (backend "${backend.name}" is Ollama)` });
  if (request.body.top_k != null) {
    refuse("top_k", "is not supported by Ollama's OpenAI-compatible API");
  }
  const choice = request.body.tool_choice;
  if (choice?.type === "any" || choice?.type === "tool") {
    refuse("tool_choice.type", `"${choice.type}" is not honoured by Ollama: use "auto" or "none"`);
  }
  if (choice && choice.type !== "none" && choice.disable_parallel_tool_use) {
    refuse("tool_choice.disable_parallel_tool_use", "is not honoured by Ollama");
  }
  return problems;
}

/**
 * With the gateway's memory one chat message a turn is new, so a last
 * message that becomes several (tool results, or results and text) or
 * continues the assistant's text is refused rather than stored wrong.
 */
function memoryModeProblems(request: MessagesRequest): FieldProblem[] {
  const at = `messages[${request.lastIndex}]`;
  const whole = `send the whole chat without ${CONVERSATION_HEADER}`;
  const last = request.messages.at(-1)!;
  if (last.role === "assistant") {
    return [{
      param: `${at}.role`,
      message:
        `a last message from the assistant (to continue) needs the chat it continues: ${whole}`,
    }];
  }
  if (request.lastTurn > 1) {
    return [{
      param: `${at}.content`,
      message:
        `with ${CONVERSATION_HEADER} one message a turn is new, and this one holds ${request.lastTurn} (each tool result is one): send one tool result a request, or ${whole}`,
    }];
  }
  return [];
}
