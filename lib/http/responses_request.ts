/**
 * The body of `POST /v1/responses`, checked against a schema and turned into
 * a chat job's parts: the input as chat messages, the backend's fields in a
 * chat completion's shape, and what the gateway itself handles (`store`,
 * `previous_response_id`, `conversation`, `metadata`, `stream`). Every field
 * of OpenAI's Responses API is carried, ignored because it cannot change the
 * answer (see `IGNORED`), or refused by name; so is a field it does not know.
 */
import * as z from "zod/mini";
import type { CompletionParams } from "../core/jobs.ts";
import { type FieldProblem, invalidRequest } from "./errors.ts";
import { cappedArray, idProblem, MAX_SHORT_CHARS, MAX_TEXT_CHARS } from "./request_fields.ts";
import { type InputChat, lastItemProblem, parseInput } from "./responses_input.ts";
import {
  chatParams,
  type FunctionTool,
  type TextFormat,
  type ToolChoice,
} from "./responses_params.ts";
import { zodProblems } from "./validation.ts";

/** Tools OpenAI allows in one request. */
const MAX_TOOLS = 128;
/** OpenAI's limits on `metadata`, and ours on its size: it is kept in the job record. */
const METADATA = { pairs: 16, keyChars: 64, valueChars: 512, bytes: 4096 };

/**
 * Fields taken and left unused, since they cannot change the answer: hints
 * to OpenAI's own capacity, caches and abuse checks, and a cap on built-in
 * tool calls (built-in tools are refused).
 */
const IGNORED = new Set([
  "service_tier",
  "safety_identifier",
  "prompt_cache_key",
  "prompt_cache_retention",
  "max_tool_calls",
]);

/** Why a field of the Responses API is refused, where more can be said than "not supported". */
const REFUSED: Record<string, string> = {
  prompt:
    "prompt templates are kept by OpenAI, not by this gateway: send instructions and input instead",
  context_management: "compaction is not supported: leave context_management out",
};

const shortString = z.string({ error: "must be a string" })
  .check(z.maxLength(MAX_SHORT_CHARS, `must be at most ${MAX_SHORT_CHARS} characters`));
const nonEmptyShort = shortString.check(z.minLength(1, "must not be empty"));
const longText = z.string({ error: "must be a string" })
  .check(z.maxLength(MAX_TEXT_CHARS, `must be at most ${MAX_TEXT_CHARS} characters`));
const boolean = z.boolean({ error: "must be a boolean" });
const integer = z.int({ error: "must be an integer", abort: true });
const jsonObject = z.record(z.string(), z.unknown(), { error: "must be a JSON object" });

function between(low: number, high: number) {
  const message = `must be between ${low} and ${high}`;
  return z.number({ error: "must be a number" }).check(z.gte(low, message), z.lte(high, message));
}

const functionToolSchema = z.strictObject({
  type: z.literal("function"),
  name: nonEmptyShort,
  description: z.nullish(longText),
  parameters: z.nullish(jsonObject),
  strict: z.nullish(boolean),
});

const textFormatSchema = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("text") }),
  z.strictObject({ type: z.literal("json_object") }),
  z.strictObject({
    type: z.literal("json_schema"),
    name: nonEmptyShort,
    schema: jsonObject,
    strict: z.nullish(boolean),
    description: z.nullish(longText),
  }),
], { error: 'must be a format of type "text", "json_object" or "json_schema"' });

const requestSchema = z.looseObject({
  model: z.nullish(shortString),
  instructions: z.nullish(longText),
  tools: z.nullish(cappedArray(z.unknown(), { max: MAX_TOOLS, items: "tools" })),
  tool_choice: z.nullish(z.unknown()),
  parallel_tool_calls: z.nullish(boolean),
  temperature: z.nullish(between(0, 2)),
  top_p: z.nullish(between(0, 1)),
  max_output_tokens: z.nullish(integer.check(z.positive("must be positive"))),
  stream: z.nullish(boolean),
  store: z.nullish(boolean),
  previous_response_id: z.nullish(nonEmptyShort),
  conversation: z.nullish(z.unknown()),
  metadata: z.nullish(z.unknown()),
  text: z.nullish(z.strictObject({
    format: z.nullish(textFormatSchema),
    verbosity: z.nullish(z.literal("medium", {
      error: 'chat backends have no verbosity setting: leave it out or "medium"',
    })),
  }, { error: "must be an object" })),
  reasoning: z.nullish(z.strictObject({
    effort: z.nullish(z.enum(["none", "minimal", "low", "medium", "high", "xhigh"], {
      error: 'must be "none", "minimal", "low", "medium", "high" or "xhigh"',
    })),
    // The reasoning comes back whole, as reasoning_text, whatever summary is asked for.
    summary: z.nullish(z.enum(["auto", "concise", "detailed"])),
    generate_summary: z.nullish(z.enum(["auto", "concise", "detailed"])),
  }, { error: "must be an object" })),
  truncation: z.nullish(z.literal("auto", {
    error:
      'only "auto" is taken: the worker keeps the newest turns within HISTORY_MAX_MESSAGES and HISTORY_MAX_BYTES; leave it out or send "auto"',
  })),
  user: z.nullish(shortString),
  top_logprobs: z.nullish(integer.check(z.refine(
    (n: number) => n === 0,
    "log probabilities are not returned by this gateway: leave top_logprobs out or 0",
  ))),
  background: z.nullish(boolean.check(z.refine(
    (on: boolean) => !on,
    "background responses are not supported: the request waits for its answer (or streams it)",
  ))),
  include: z.nullish(cappedArray(
    shortString.check(z.refine(
      (value: string) => value !== "message.output_text.logprobs",
      "log probabilities are not returned by this gateway",
    )),
    { max: 16, items: "strings" },
  )),
  // include_obfuscation pads events against side channels; these events carry no padding.
  stream_options: z.nullish(z.strictObject({ include_obfuscation: z.nullish(boolean) })),
}, { error: "must be a JSON object" });

/** The fields {@linkcode requestSchema} knows; any other field is refused. */
const KNOWN = new Set([...Object.keys(requestSchema.def.shape), "input", ...IGNORED]);

/** A valid `POST /v1/responses` body. */
export interface ResponsesRequest {
  model?: string;
  input: InputChat;
  instructions?: string;
  /** The backend's fields, as a chat completion names them. */
  params: CompletionParams;
  stream: boolean;
  /** Whether the response is kept (OpenAI's default: true). */
  store: boolean;
  previousResponseId?: string;
  /** The gateway conversation the response joins. */
  conversation?: string;
  metadata?: Record<string, string>;
}

/** Parses a Responses request body, or throws a 400 listing every problem. */
export function parseResponsesRequest(body: unknown): ResponsesRequest {
  const result = requestSchema.safeParse(body, { reportInput: true });
  const problems = result.success ? [] : fieldProblems(result.error.issues);
  // The rest is checked on the body as sent, so that one 400 lists every problem.
  const raw = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
  const input = parseInput(raw.input);
  problems.push(...input.problems, ...unknownFields(raw));
  const tools = toolsOf(raw.tools, problems);
  const toolChoice = toolChoiceOf(raw.tool_choice, problems);
  const metadata = metadataOf(raw.metadata, problems);
  const conversation = conversationOf(raw.conversation, problems);
  if (conversation !== undefined && raw.previous_response_id != null) {
    problems.push({
      param: "previous_response_id",
      message: "cannot be used with conversation: the conversation holds the history",
    });
  }
  if (conversation !== undefined && raw.store === false) {
    problems.push({ param: "store", message: "a response in a conversation is kept with it" });
  }
  const last = input.chat && lastItemProblem(input.chat.messages, input.chat.origins);
  if (last) problems.push(last);
  if (!result.success || problems.length > 0 || !input.chat) throw invalidRequest(problems);
  const data = result.data;

  const request: ResponsesRequest = {
    input: input.chat,
    params: chatParams({
      tools,
      // Without tools, "auto" and "none" say the same, and parallel calls are none: left out, so
      // that a backend which would refuse them without tools is not asked. "required" is refused.
      tool_choice: tools || (toolChoice !== "auto" && toolChoice !== "none")
        ? toolChoice
        : undefined,
      parallel_tool_calls: tools ? data.parallel_tool_calls ?? undefined : undefined,
      temperature: data.temperature ?? undefined,
      top_p: data.top_p ?? undefined,
      max_output_tokens: data.max_output_tokens ?? undefined,
      format: (data.text?.format ?? undefined) as TextFormat | undefined,
      effort: data.reasoning?.effort ?? undefined,
      user: data.user ?? undefined,
    }),
    stream: data.stream ?? false,
    store: data.store ?? true,
  };
  if (data.model != null) request.model = data.model;
  if (data.instructions != null) request.instructions = data.instructions;
  if (data.previous_response_id != null) request.previousResponseId = data.previous_response_id;
  if (conversation !== undefined) request.conversation = conversation;
  if (metadata !== undefined) request.metadata = metadata;
  return request;
}

/**
 * Zod's issues as field problems, under `prefix` when given; a key an object
 * does not take is named as a field of its own.
 */
function fieldProblems(issues: readonly z.core.$ZodIssue[], prefix?: string): FieldProblem[] {
  const named = issues.flatMap((issue): z.core.$ZodIssue[] =>
    issue.code === "unrecognized_keys"
      ? issue.keys.map((key) => ({
        ...issue,
        code: "custom",
        path: [...issue.path, key],
        message: "is not a field this gateway takes: leave it out",
      }))
      : [issue]
  );
  return zodProblems(named).map(({ param, message }) => ({
    param: prefix === undefined ? param : param === "body" ? prefix : `${prefix}.${param}`,
    message,
  }));
}

function unknownFields(data: Record<string, unknown>): FieldProblem[] {
  return Object.entries(data)
    .filter(([key, value]) => !KNOWN.has(key) && value !== null && value !== undefined)
    .map(([key]) => ({
      param: key,
      message: Object.hasOwn(REFUSED, key)
        ? REFUSED[key]
        : "is not a Responses API field this gateway takes: leave it out (see docs/responses-api.md)",
    }));
}

/**
 * Function tools; OpenAI's built-in tools run on OpenAI's side, and are
 * refused by name. An empty list is no tools (agents without tools send
 * one), which a backend such as vLLM would refuse if sent as it is.
 */
function toolsOf(tools: unknown, problems: FieldProblem[]): FunctionTool[] | undefined {
  if (!Array.isArray(tools) || tools.length > MAX_TOOLS) return undefined; // the schema says why
  if (tools.length === 0) return undefined;
  return tools.flatMap((tool, i) => {
    const type = (tool as { type?: unknown } | null)?.type;
    if (type !== "function") {
      problems.push({
        param: `tools[${i}].type`,
        message: typeof type === "string"
          ? `"${type}" is a tool OpenAI runs itself; this gateway's backends call only function tools: leave it out, or declare it as a function`
          : 'must be "function"',
      });
      return [];
    }
    const parsed = functionToolSchema.safeParse(tool, { reportInput: true });
    if (parsed.success) return [parsed.data as FunctionTool];
    problems.push(...fieldProblems(parsed.error.issues, `tools[${i}]`));
    return [];
  });
}

function toolChoiceOf(value: unknown, problems: FieldProblem[]): ToolChoice | undefined {
  if (value === undefined || value === null) return undefined;
  if (value === "none" || value === "auto" || value === "required") return value;
  const choice = value as { type?: unknown; name?: unknown };
  if (choice?.type === "function" && typeof choice.name === "string" && choice.name.length > 0) {
    return { type: "function", name: choice.name };
  }
  problems.push({
    param: "tool_choice",
    message: typeof choice?.type === "string" && choice.type !== "function"
      ? `"${choice.type}" is not supported: use "none", "auto", "required" or { "type": "function", "name" }`
      : 'must be "none", "auto", "required" or { "type": "function", "name" }',
  });
  return undefined;
}

function metadataOf(
  value: unknown,
  problems: FieldProblem[],
): Record<string, string> | undefined {
  if (value === undefined || value === null) return undefined;
  const refuse = (message: string) => {
    problems.push({ param: "metadata", message });
    return undefined;
  };
  if (typeof value !== "object" || Array.isArray(value)) return refuse("must be an object");
  const entries = Object.entries(value);
  if (entries.length > METADATA.pairs) {
    return refuse(`must hold at most ${METADATA.pairs} pairs, got ${entries.length}`);
  }
  for (const [key, text] of entries) {
    if (key.length > METADATA.keyChars) {
      return refuse(`its keys must be at most ${METADATA.keyChars} characters`);
    }
    if (typeof text !== "string" || text.length > METADATA.valueChars) {
      return refuse(`its values must be strings of at most ${METADATA.valueChars} characters`);
    }
  }
  if (new TextEncoder().encode(JSON.stringify(value)).length > METADATA.bytes) {
    return refuse(`must take at most ${METADATA.bytes} bytes as JSON: it is kept with the job`);
  }
  return value as Record<string, string>;
}

/** `conversation`: an id, or an object with one; it names a gateway conversation. */
function conversationOf(value: unknown, problems: FieldProblem[]): string | undefined {
  if (value === undefined || value === null) return undefined;
  const id = typeof value === "string" ? value : (value as { id?: unknown } | null)?.id;
  const param = typeof value === "string" ? "conversation" : "conversation.id";
  if (typeof id !== "string") {
    problems.push({ param, message: "must be a conversation id, or an object with one as id" });
    return undefined;
  }
  const problem = idProblem(id.trim());
  if (problem) problems.push({ param, message: problem });
  return problem ? undefined : id.trim();
}
