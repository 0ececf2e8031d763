/**
 * OpenAI's `response` object as the gateway answers it: what was asked, the
 * output items of the reply (reasoning, the message, function calls), and
 * the token counts. A response is a job: its id is the job's with `resp_`
 * before it, and its items' ids are made from the job's, so they are the
 * same in a stream, its answer and every later read.
 */
import type { CompletionParams, Job, ResponseRecord } from "../core/jobs.ts";
import { replyMessage, type Usage } from "../core/messages.ts";
import { isJobId } from "./job_routes.ts";
import { type EchoedFields, echoedFields } from "./responses_params.ts";

const PREFIX = "resp_";

/** A response's id: its job's. */
export function responseId(jobId: string): string {
  return `${PREFIX}${jobId}`;
}

/** The job id in a response id, or undefined when it is none the gateway makes. */
export function jobIdOfResponse(id: string | undefined): string | undefined {
  const jobId = id?.startsWith(PREFIX) ? id.slice(PREFIX.length) : undefined;
  return isJobId(jobId) ? jobId : undefined;
}

/** What a response says besides its output: from its request, or from its job. */
export interface ResponseFacts {
  jobId: string;
  /** Epoch seconds. */
  createdAt: number;
  model: string;
  instructions: string | null;
  /** The backend's fields the job was sent with. */
  params: CompletionParams | undefined;
  record: ResponseRecord;
  /** The client's id of the conversation the response is in. */
  conversation?: string;
}

/** `output_text` in a message item. */
export interface OutputText {
  type: "output_text";
  text: string;
  annotations: [];
  logprobs: [];
}

/** The text a reasoning model showed before its answer. */
export interface ReasoningText {
  type: "reasoning_text";
  text: string;
}

/** An item of a response's output. */
export type OutputItem =
  | {
    type: "message";
    id: string;
    status: ItemStatus;
    role: "assistant";
    content: OutputText[];
  }
  | {
    type: "reasoning";
    id: string;
    status: ItemStatus;
    summary: [];
    content: ReasoningText[];
  }
  | {
    type: "function_call";
    id: string;
    status: ItemStatus;
    call_id: string;
    name: string;
    arguments: string;
  };

/** Where an output item is. */
export type ItemStatus = "in_progress" | "completed" | "incomplete";

/** Where a response is. */
export type ResponseStatus =
  | "queued"
  | "in_progress"
  | "completed"
  | "incomplete"
  | "failed"
  | "cancelled";

/** Token counts as the Responses API names them. */
export interface ResponseUsage {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
}

/** Why a response went wrong, as its `error` says. */
export interface ResponseError {
  code: string;
  message: string;
}

/** OpenAI's `response` object. */
export interface ResponseObject extends EchoedFields {
  id: string;
  object: "response";
  created_at: number;
  status: ResponseStatus;
  background: false;
  error: ResponseError | null;
  incomplete_details: { reason: "max_output_tokens" } | null;
  instructions: string | null;
  metadata: Record<string, string>;
  model: string;
  output: OutputItem[];
  previous_response_id: string | null;
  service_tier: "default";
  store: boolean;
  top_logprobs: 0;
  truncation: "auto";
  usage: ResponseUsage | null;
  conversation: { id: string } | null;
}

/** The ids of a job's output items: one message and one reasoning item, and a call per tool call. */
export function itemIds(jobId: string) {
  return {
    message: `msg_${jobId}`,
    reasoning: `rs_${jobId}`,
    call: (index: number) => `fc_${jobId}_${index}`,
  };
}

/** The job id in an output item's id (`msg_`, `rs_` or `fc_`, the job's id, and a call's index). */
export function jobIdOfItem(id: string): string | undefined {
  const jobId = /^(?:msg|rs|fc)_([0-9a-f-]{36})(?:_\d+)?$/.exec(id)?.[1];
  return isJobId(jobId) ? jobId : undefined;
}

/** Options for {@linkcode responseObject}. */
export interface ResponseState {
  status: ResponseStatus;
  output?: OutputItem[];
  usage?: Usage;
  error?: ResponseError;
}

/** Builds the response object in a given state. */
export function responseObject(facts: ResponseFacts, state: ResponseState): ResponseObject {
  return {
    id: responseId(facts.jobId),
    object: "response",
    created_at: facts.createdAt,
    status: state.status,
    background: false,
    error: state.error ?? null,
    incomplete_details: state.status === "incomplete" ? { reason: "max_output_tokens" } : null,
    instructions: facts.instructions,
    metadata: facts.record.metadata ?? {},
    model: facts.model,
    output: state.output ?? [],
    previous_response_id: facts.record.previous_response_id ?? null,
    service_tier: "default",
    store: facts.record.store,
    ...echoedFields(facts.params),
    top_logprobs: 0,
    truncation: "auto",
    usage: state.usage ? responseUsage(state.usage) : null,
    conversation: facts.conversation !== undefined ? { id: facts.conversation } : null,
  };
}

/** The response object of a job as it stands: its output once it succeeded, its reason once it failed. */
export function jobResponse(jobFacts: ResponseFacts, job: Job): ResponseObject {
  // The job's own creation time, so that every read of the response says the same.
  const facts = { ...jobFacts, createdAt: Math.floor(Date.parse(job.created_at) / 1000) };
  if (job.status === "succeeded") {
    const status = job.finish_reason === "length" ? "incomplete" : "completed";
    return responseObject(facts, { status, output: outputItems(job), usage: job.usage });
  }
  if (job.status === "failed") {
    return responseObject(facts, {
      status: "failed",
      error: { code: "server_error", message: job.error ?? "the job failed" },
    });
  }
  const status = { queued: "queued", running: "in_progress", canceled: "cancelled" } as const;
  return responseObject(facts, { status: status[job.status] });
}

/**
 * A succeeded job's reply as output items: its reasoning, its text (or an
 * empty message when it has neither text nor calls), and its function calls.
 */
export function outputItems(job: Job): OutputItem[] {
  const reply = replyMessage(job.reply, job.reply_message);
  const ids = itemIds(job.job_id);
  const status: ItemStatus = job.finish_reason === "length" ? "incomplete" : "completed";
  const items: OutputItem[] = [];
  if (reply.reasoning_content) items.push(reasoningItem(ids.reasoning, reply.reasoning_content));
  const text = typeof reply.content === "string"
    ? reply.content
    : (reply.content ?? []).map((p) => p.type === "text" ? p.text : "").join("");
  const calls = reply.tool_calls ?? [];
  if (text || calls.length === 0) items.push(messageItem(ids.message, text, status));
  calls.forEach((call, i) => items.push(functionCallItem(ids.call(i), call, status)));
  return items;
}

/** A message item holding `text`. */
export function messageItem(id: string, text: string, status: ItemStatus): OutputItem {
  return { type: "message", id, status, role: "assistant", content: [outputText(text)] };
}

/** An `output_text` part. */
export function outputText(text: string): OutputText {
  return { type: "output_text", text, annotations: [], logprobs: [] };
}

/** A reasoning item holding `text`. */
export function reasoningItem(id: string, text: string): OutputItem {
  return {
    type: "reasoning",
    id,
    status: "completed",
    summary: [],
    content: [{ type: "reasoning_text", text }],
  };
}

/** A function call item. */
export function functionCallItem(
  id: string,
  call: { id: string; function: { name: string; arguments: string } },
  status: ItemStatus,
): OutputItem {
  return {
    type: "function_call",
    id,
    status,
    call_id: call.id,
    name: call.function.name,
    arguments: call.function.arguments,
  };
}

/** A chat's token counts as the Responses API names them. */
export function responseUsage(usage: Usage): ResponseUsage {
  return {
    input_tokens: usage.prompt_tokens,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: usage.completion_tokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: usage.total_tokens,
  };
}
