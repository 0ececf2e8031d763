/**
 * The body of `POST /v1/chat/completions`, checked against a schema and
 * normalized. Every OpenAI chat field vLLM or Ollama accepts is checked and
 * passed through to the backend; fields the gateway does not know are passed
 * through too (Open WebUI sends backend options such as `top_k` at the top
 * level), and the backend decides. Messages may be system, user, assistant
 * (with tool calls, or last: "continue this reply") and tool results.
 */
import * as z from "zod/mini";
import { type FieldProblem, invalidRequest } from "./errors.ts";
import type { CompletionParams } from "../core/jobs.ts";
import type { ChatMessage, ContentPart, ToolCall } from "../core/messages.ts";
import {
  cappedArray,
  imageUrlSchema,
  MAX_CONTENT_PARTS,
  MAX_IMAGES,
  MAX_MESSAGES,
  MAX_REQUEST_IMAGES,
  MAX_SHORT_CHARS,
  MAX_TEXT_CHARS,
} from "./request_fields.ts";
import { asRaw, zodProblems } from "./validation.ts";

/** Stop sequences OpenAI allows in one request. */
const MAX_STOP_SEQUENCES = 4;
/** Tools OpenAI allows in one request. */
const MAX_TOOLS = 128;
/** Tool calls in one assistant message of the history. */
const MAX_TOOL_CALLS = 128;

/** Fields the gateway handles itself; the rest of the body goes to the backend. */
const HANDLED = new Set(["model", "messages", "stream", "stream_options", "max_completion_tokens"]);

const TOO_LONG = `must be at most ${MAX_TEXT_CHARS} characters`;
const shortString = z.string({ error: "must be a string" })
  .check(z.maxLength(MAX_SHORT_CHARS, `must be at most ${MAX_SHORT_CHARS} characters`));
const nonEmptyShortString = shortString.check(z.minLength(1, "must not be empty"));
const longText = z.string({ error: "must be a string" }).check(
  z.maxLength(MAX_TEXT_CHARS, TOO_LONG),
);

const textPartSchema = z.object({
  type: z.literal("text"),
  text: longText,
});

const imagePartSchema = z.object({
  type: z.literal("image_url"),
  image_url: z.object({
    url: imageUrlSchema,
    detail: z.optional(shortString),
  }, { error: "must be an object with a url string" }),
});

const partsSchema = cappedArray(
  z.discriminatedUnion("type", [textPartSchema, imagePartSchema], {
    error: 'must be a part of type "text" or "image_url"',
  }),
  {
    max: MAX_CONTENT_PARTS,
    items: "content parts",
    tooFew: { min: 1, problem: "must hold at least one part" },
  },
);

// A union of string and parts would report only "no option matched"; choosing the
// schema by the value's kind keeps errors on the exact part, e.g. content[1].text.
const contentSchema = z.transform((value: unknown, ctx): string | ContentPart[] | null => {
  if (value === null) return null; // allowed or not by the role: see messageProblems
  if (typeof value === "string") {
    const text = longText.safeParse(value, { reportInput: true });
    if (text.success) return text.data;
    ctx.issues.push(...asRaw(text.error.issues));
  } else if (Array.isArray(value)) {
    const parts = partsSchema.safeParse(value, { reportInput: true });
    if (parts.success) return parts.data.map(toContentPart);
    ctx.issues.push(...asRaw(parts.error.issues));
  } else {
    const message = value === undefined
      ? "is required"
      : "must be a string or an array of content parts";
    ctx.issues.push({ code: "custom", input: value, message });
  }
  return z.NEVER;
});

const toolCallSchema = z.object({
  id: nonEmptyShortString,
  type: z.literal("function", { error: 'must be "function"' }),
  function: z.object({
    name: nonEmptyShortString,
    arguments: longText,
  }, { error: "must be an object with name and arguments" }),
}, { error: "must be a tool call object" });

const messageObject = z.object({
  role: z.enum(["system", "user", "assistant", "tool", "developer"], {
    error: 'must be "system", "user", "assistant", "tool" or "developer"',
  }),
  content: contentSchema,
  name: z.optional(shortString),
  tool_calls: z.optional(cappedArray(toolCallSchema, { max: MAX_TOOL_CALLS, items: "tool calls" })),
  tool_call_id: z.optional(nonEmptyShortString),
  reasoning_content: z.optional(longText),
}, { error: "must be an object with role and content" });

/** A message; OpenAI lets an assistant message that calls tools leave its content out. */
const messageSchema = z.pipe(
  z.transform((value: unknown) => {
    const message = value as { role?: unknown; content?: unknown; tool_calls?: unknown } | null;
    const callsTools = message?.role === "assistant" && Array.isArray(message.tool_calls) &&
      message.tool_calls.length > 0;
    return callsTools && message.content === undefined ? { ...message, content: null } : value;
  }),
  messageObject,
);

const functionToolSchema = z.looseObject({
  type: z.literal("function", { error: 'must be "function"' }),
  function: z.looseObject({
    name: nonEmptyShortString,
    description: z.optional(longText),
  }, { error: "must be an object with a name" }),
}, { error: "must be a tool object" });

const toolChoiceSchema = z.custom((value) => {
  if (value === "none" || value === "auto" || value === "required") return true;
  const name = (value as { function?: { name?: unknown } } | null)?.function?.name;
  return (value as { type?: unknown } | null)?.type === "function" && typeof name === "string";
}, { error: '"none", "auto", "required" or { "type": "function", "function": { "name" } }' });

const logitBiasSchema = z.custom((value) => {
  const entries = typeof value === "object" && value !== null && !Array.isArray(value)
    ? Object.entries(value)
    : undefined;
  return entries !== undefined && entries.length <= 300 &&
    entries.every(([token, bias]) =>
      /^\d{1,9}$/.test(token) && typeof bias === "number" && bias >= -100 && bias <= 100
    );
}, { error: "must map at most 300 token ids to numbers from -100 to 100" });

/** A number from `low` to `high`, one message for both bounds. */
function between(low: number, high: number) {
  const message = `must be between ${low} and ${high}`;
  return z.number({ error: "must be a number" }).check(z.gte(low, message), z.lte(high, message));
}

// zod reports an integer beyond 2^53 as "too big" and would go on to the next checks
// ("must be 1"…); abort keeps it to one problem, as for 1.5.
const integer = z.int({ error: "must be an integer", abort: true });
const positiveInteger = integer.check(z.positive("must be positive"));
const boolean = z.boolean({ error: "must be a boolean" });

const completionRequestSchema = z.looseObject({
  model: z.nullish(shortString),
  messages: cappedArray(messageSchema, {
    max: MAX_MESSAGES,
    items: "messages",
    tooFew: { min: 1, problem: "must hold at least one message" },
  }),
  stream: z.nullish(boolean),
  stream_options: z.nullish(
    z.looseObject({ include_usage: z.nullish(boolean) }, { error: "must be an object" }),
  ),
  temperature: z.nullish(between(0, 2)),
  top_p: z.nullish(between(0, 1)),
  max_tokens: z.nullish(positiveInteger),
  max_completion_tokens: z.nullish(positiveInteger),
  stop: z.nullish(
    z.union([
      shortString,
      cappedArray(shortString, { max: MAX_STOP_SEQUENCES, items: "strings" }),
    ], {
      error:
        `must be a string or an array of at most ${MAX_STOP_SEQUENCES} strings of at most ${MAX_SHORT_CHARS} characters`,
    }),
  ),
  seed: z.nullish(integer),
  frequency_penalty: z.nullish(between(-2, 2)),
  presence_penalty: z.nullish(between(-2, 2)),
  logit_bias: z.nullish(logitBiasSchema),
  n: z.nullish(
    integer.check(
      z.gte(1, "must be 1"),
      z.lte(1, "must be 1: the gateway answers with one choice"),
    ),
  ),
  // The worker keeps the reply's text, not its tokens: asking for them would get nothing back.
  logprobs: z.nullish(boolean.check(
    z.refine(
      (on: boolean) => !on,
      "log probabilities are not returned by this gateway: leave logprobs out or false",
    ),
  )),
  top_logprobs: z.nullish(integer.check(
    z.refine(
      (n: number) => n === 0,
      "log probabilities are not returned by this gateway: leave top_logprobs out or 0",
    ),
  )),
  response_format: z.nullish(
    z.looseObject({
      type: z.enum(["text", "json_object", "json_schema"], {
        error: 'must be "text", "json_object" or "json_schema"',
      }),
    }, { error: "must be an object with a type" }),
  ),
  tools: z.nullish(cappedArray(functionToolSchema, { max: MAX_TOOLS, items: "tools" })),
  tool_choice: z.nullish(toolChoiceSchema),
  parallel_tool_calls: z.nullish(boolean),
  reasoning_effort: z.nullish(shortString),
  user: z.nullish(shortString),
}, { error: "must be a JSON object" });

/** A valid `POST /v1/chat/completions` body, normalized to our message shape. */
export interface CompletionRequest {
  model?: string;
  messages: ChatMessage[];
  stream: boolean;
  /** `stream_options.include_usage`: the stream's last chunk carries the token counts. */
  includeUsage: boolean;
  /** Every other field, for the backend: `max_completion_tokens` arrives as `max_tokens`. */
  params: CompletionParams;
}

/** Parses an OpenAI chat completion request body, or throws a 400 listing every problem. */
export function parseCompletionRequest(body: unknown): CompletionRequest {
  const result = completionRequestSchema.safeParse(body, { reportInput: true });
  const problems = result.success ? [] : zodProblems(result.error.issues);
  const lastRole = lastRoleProblem(body);
  if (lastRole) problems.push(lastRole);
  if (result.success) {
    problems.push(...messageProblems(result.data.messages));
    problems.push(...imageCountProblems(result.data.messages));
  }
  if (!result.success || problems.length > 0) throw invalidRequest(problems);

  const data = result.data;
  const params: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(data)) {
    if (!HANDLED.has(key) && value !== null && value !== undefined) params[key] = value;
  }
  // Ollama reads only max_tokens; every backend reads it.
  const maxTokens = data.max_tokens ?? data.max_completion_tokens;
  if (maxTokens != null) params.max_tokens = maxTokens;

  const request: CompletionRequest = {
    messages: data.messages.map(normalizeMessage),
    stream: data.stream ?? false,
    includeUsage: data.stream_options?.include_usage === true,
    params,
  };
  if (data.model != null) request.model = data.model;
  return request;
}

type ParsedMessage = z.infer<typeof messageObject>;

function normalizeMessage(m: ParsedMessage): ChatMessage {
  const message: ChatMessage = {
    role: m.role === "developer" ? "system" : m.role,
    content: m.content,
  };
  if (m.name !== undefined) message.name = m.name;
  if (m.tool_calls?.length) message.tool_calls = m.tool_calls as ToolCall[];
  if (m.tool_call_id !== undefined) message.tool_call_id = m.tool_call_id;
  if (m.reasoning_content !== undefined) message.reasoning_content = m.reasoning_content;
  return message;
}

/** What each role's message must hold. */
function messageProblems(messages: readonly ParsedMessage[]): FieldProblem[] {
  const problems: FieldProblem[] = [];
  messages.forEach((m, i) => {
    const at = (field: string, message: string) =>
      problems.push({ param: `messages[${i}].${field}`, message });
    if (m.content === null && !(m.role === "assistant" && m.tool_calls?.length)) {
      at("content", "is required, unless an assistant message calls tools");
    }
    if (m.role === "tool" && m.tool_call_id === undefined) {
      at("tool_call_id", "is required on a tool message: the call it answers");
    }
    if (m.role !== "assistant" && m.tool_calls !== undefined) {
      at("tool_calls", "only an assistant message calls tools");
    }
    if (m.role !== "user" && Array.isArray(m.content)) {
      const image = m.content.findIndex((p) => p.type === "image_url");
      if (image !== -1) at(`content[${image}]`, `only a user message holds images`);
    }
  });
  return problems;
}

// Checked on the raw body so the problem is listed even when other messages are invalid.
function lastRoleProblem(body: unknown): FieldProblem | undefined {
  const messages = (body as { messages?: unknown } | null)?.messages;
  if (!Array.isArray(messages) || messages.length === 0) return undefined;
  const last = messages.length - 1;
  const role = (messages[last] as { role?: unknown } | null)?.role;
  // A missing or unknown role is already reported by the schema.
  if (role !== "system" && role !== "developer") return undefined;
  return {
    param: `messages[${last}].role`,
    message:
      `must be "user", "tool" or "assistant" (to continue it): the last message is the one answered, got "${role}"`,
  };
}

/** Images are fetched for the backend: a few in the message answered, a bounded number in all. */
function imageCountProblems(
  messages: readonly { content: string | ContentPart[] | null }[],
): FieldProblem[] {
  const counts = messages.map((m) =>
    Array.isArray(m.content) ? m.content.filter((p) => p.type === "image_url").length : 0
  );
  const problems: FieldProblem[] = [];
  const last = counts.length - 1;
  if (counts[last] > MAX_IMAGES) {
    problems.push({
      param: `messages[${last}].content`,
      message: `must hold at most ${MAX_IMAGES} images, got ${counts[last]}`,
    });
  }
  const total = counts.reduce((sum, n) => sum + n, 0);
  if (total > MAX_REQUEST_IMAGES) {
    problems.push({
      param: "messages",
      message: `must hold at most ${MAX_REQUEST_IMAGES} images in all, got ${total}`,
    });
  }
  return problems;
}

function toContentPart(
  part: z.infer<typeof textPartSchema> | z.infer<typeof imagePartSchema>,
): ContentPart {
  if (part.type === "text") return { type: "text", text: part.text };
  return { type: "image_url", image_url: { url: part.image_url.url } };
}

/**
 * Fields a backend of this kind would refuse or quietly ignore, named in a
 * 400 before the job is queued. Ollama's OpenAI layer ignores `logit_bias`,
 * `tool_choice` and `parallel_tool_calls`, and takes only four reasoning
 * efforts; vLLM refuses an empty `tools` list.
 */
export function backendFieldProblems(
  kind: string,
  backendName: string,
  params: CompletionParams,
): FieldProblem[] {
  const problems: FieldProblem[] = [];
  const refuse = (param: string, why: string) =>
    problems.push({ param, message: `${why} (backend "${backendName}" is ${kind})` });
  const tools = params.tools as unknown[] | undefined;
  if (tools !== undefined && tools.length === 0) {
    refuse("tools", "must hold at least one tool, or be left out");
  }
  if (params.tool_choice !== undefined && tools === undefined) {
    refuse("tool_choice", "needs tools");
  }
  if (kind === "ollama") {
    if (params.logit_bias !== undefined) refuse("logit_bias", "is not supported by Ollama");
    const choice = params.tool_choice;
    if (choice !== undefined && choice !== "auto" && choice !== "none") {
      refuse("tool_choice", 'can only be "auto" or "none" with Ollama');
    }
    if (params.parallel_tool_calls === false) {
      refuse("parallel_tool_calls", "cannot be turned off with Ollama");
    }
    const effort = params.reasoning_effort;
    if (effort !== undefined && !["high", "medium", "low", "none"].includes(effort as string)) {
      refuse("reasoning_effort", 'must be "high", "medium", "low" or "none" with Ollama');
    }
  }
  return problems;
}
