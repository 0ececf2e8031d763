/**
 * The job a `POST /v1/responses` request makes. A response is a stateless
 * job whose context is the whole chat before its last input item: its
 * instructions, the chat the response it continues ended (read from the
 * store, so a chain of any length is one blob away, see lib/http/payloads.ts),
 * then its input. With `conversation`, it is a job of that gateway
 * conversation instead, whose stored history holds the rest.
 */
import type { ResponseRecord } from "../core/jobs.ts";
import type { ChatMessage } from "../core/messages.ts";
import type { Services } from "../core/services.ts";
import { backendFieldProblems } from "./completion_request.ts";
import { invalidRequest } from "./errors.ts";
import type { Target } from "./model_directory.ts";
import type { JobSpec } from "./submit.ts";
import { toolCallProblems } from "./responses_input.ts";
import { previousChat, storedResponse } from "./responses_history.ts";
import { RESPONSES_FIELD } from "./responses_params.ts";
import type { ResponsesRequest } from "./responses_request.ts";

/** What a response's job keeps of its request. */
export function responseRecord(request: ResponsesRequest): ResponseRecord {
  const record: ResponseRecord = { store: request.store };
  if (request.previousResponseId) record.previous_response_id = request.previousResponseId;
  if (request.instructions !== undefined) record.instructions = true;
  if (request.metadata) record.metadata = request.metadata;
  return record;
}

/** The job spec of a Responses request; reads the response it continues, if any. */
export async function responseJobSpec(
  services: Services,
  request: ResponsesRequest,
  owner: string | undefined,
): Promise<JobSpec> {
  const instructions: ChatMessage[] = request.instructions !== undefined
    ? [{ role: "system", content: request.instructions }]
    : [];
  const { messages, origins } = request.input;
  const common = {
    owner,
    priority: "normal" as const,
    model: request.model,
    userMessage: messages.at(-1)!,
    checkTarget: (target: Target) => {
      const problems = backendFieldProblems(
        target.backend.kind,
        target.backend.name,
        request.params,
      )
        // Several calls at once are several function_call items, which every Responses client
        // takes one by one; Codex asks for one at a time, and Ollama cannot promise it.
        .filter((p) => p.param !== "parallel_tool_calls")
        .map((p) => ({ ...p, param: RESPONSES_FIELD[p.param] ?? p.param }));
      if (problems.length > 0) throw invalidRequest(problems);
    },
    keepPayloads: request.store,
  };
  const fields = {
    params: request.params,
    stream: request.stream,
    api: "responses" as const,
    response: responseRecord(request),
  };
  if (request.conversation !== undefined) {
    // As with X-Conversation-Id: one message a turn is new; system messages go first, unstored.
    const leading = messages.findIndex((m) => m.role !== "system");
    if (leading < messages.length - 1) {
      throw invalidRequest([{
        param: origins[leading],
        message:
          "with conversation, one item a request is new (the conversation holds the rest): send the items one a request, or leave conversation out and send them all",
      }]);
    }
    return {
      ...common,
      conversationId: request.conversation,
      recordFields: { ...fields, context: [...instructions, ...messages.slice(0, -1)] },
    };
  }
  const history = request.previousResponseId
    ? await previousChat(
      services,
      await storedResponse(services, request.previousResponseId, {
        owner,
        param: "previous_response_id",
      }),
    )
    : [];
  const chat = [...history, ...messages];
  const problems = toolCallProblems(chat, [
    ...history.map(() => "previous_response_id"),
    ...origins,
  ]);
  if (problems.length > 0) throw invalidRequest(problems);
  return {
    ...common,
    conversationId: `responses/${crypto.randomUUID()}`,
    recordFields: {
      ...fields,
      mode: "stateless",
      context: [...instructions, ...chat.slice(0, -1)],
    },
  };
}
