/**
 * The body of `POST /v1/chat/completions`, checked against a schema and
 * normalized. Every OpenAI chat field vLLM or Ollama accepts is checked and
 * passed through to the backend; fields the gateway does not know are passed
 * through too (Open WebUI sends backend options such as `top_k` at the top
 * level), and the backend decides. Messages may be system, user, assistant
 * (with tool calls, or last: "continue this reply") and tool results.
 */
import { type Infer, z } from "./schema.ts";
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
import { zodProblems } from "./validation.ts";

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
  .max(MAX_SHORT_CHARS, `must be at most ${MAX_SHORT_CHARS} characters`);
const longText = z.string({ error: "must be a string" }).max(MAX_TEXT_CHARS, TOO_LONG);

const textPartSchema = z.object({
  type: z.literal("text"),
  text: longText,
});

const imagePartSchema = z.object({
  type: z.literal("image_url"),
  image_url: z.object({
    url: imageUrlSchema,
    detail: shortString.optional(),
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
const contentSchema = z.unknown().transform((value, ctx): string | ContentPart[] | null => {
  if (value === null) return null; // allowed or not by the role: see messageProblems
  if (value === undefined) {
    ctx.addIssue({ code: "custom", input: value, message: "is required" });
    return z.NEVER;
  }
  if (typeof value === "string") {
    if (value.length <= MAX_TEXT_CHARS) return value;
    ctx.addIssue({ code: "custom", input: value, message: TOO_LONG });
    return z.NEVER;
  }
  if (Array.isArray(value)) {
    const result = partsSchema.safeParse(value, { reportInput: true });
    if (result.success) return result.data.map(toContentPart);
    for (const issue of result.error.issues) ctx.addIssue({ ...issue });
    return z.NEVER;
  }
  ctx.addIssue({
    code: "custom",
    input: value,
    message: "must be a string or an array of content parts",
  });
  return z.NEVER;
});

const toolCallSchema = z.object({
  id: shortString.min(1, "must not be empty"),
  type: z.literal("function", { error: 'must be "function"' }),
  function: z.object({
    name: shortString.min(1, "must not be empty"),
    arguments: longText,
  }, { error: "must be an object with name and arguments" }),
}, { error: "must be a tool call object" });

const messageObject = z.object({
  role: z.enum(["system", "user", "assistant", "tool", "developer"], {
    error: 'must be "system", "user", "assistant", "tool" or "developer"',
  }),
  content: contentSchema,
  name: shortString.optional(),
  tool_calls: cappedArray(toolCallSchema, { max: MAX_TOOL_CALLS, items: "tool calls" })
    .optional(),
  tool_call_id: shortString.min(1, "must not be empty").optional(),
  reasoning_content: longText.optional(),
}, { error: "must be an object with role and content" });

/** A message; OpenAI lets an assistant message that calls tools leave its content out. */
const messageSchema = z.unknown().transform((value, ctx) => {
  const message = value as { role?: unknown; content?: unknown; tool_calls?: unknown } | null;
  const callsTools = message?.role === "assistant" && Array.isArray(message.tool_calls) &&
    message.tool_calls.length > 0;
  const input = callsTools && message.content === undefined ? { ...message, content: null } : value;
  const result = messageObject.safeParse(input, { reportInput: true });
  if (result.success) return result.data;
  for (const issue of result.error.issues) ctx.addIssue({ ...issue });
  return z.NEVER;
});

const functionToolSchema = z.looseObject({
  type: z.literal("function", { error: 'must be "function"' }),
  function: z.looseObject({
    name: shortString.min(1, "must not be empty"),
    description: longText.optional(),
  }, { error: "must be an object with a name" }),
}, { error: "must be a tool object" });

const toolChoiceSchema = z.unknown().transform((value, ctx) => {
  if (value === "none" || value === "auto" || value === "required") return value;
  const name = (value as { function?: { name?: unknown } } | null)?.function?.name;
  if ((value as { type?: unknown } | null)?.type === "function" && typeof name === "string") {
    return value;
  }
  ctx.addIssue({
    code: "custom",
    input: value,
    message: '"none", "auto", "required" or { "type": "function", "function": { "name" } }',
  });
  return z.NEVER;
});

const logitBiasSchema = z.unknown().transform((value, ctx) => {
  const entries = typeof value === "object" && value !== null && !Array.isArray(value)
    ? Object.entries(value)
    : undefined;
  if (
    entries && entries.length <= 300 &&
    entries.every(([token, bias]) =>
      /^\d{1,9}$/.test(token) && typeof bias === "number" && bias >= -100 && bias <= 100
    )
  ) return value;
  ctx.addIssue({
    code: "custom",
    input: value,
    message: "must map at most 300 token ids to numbers from -100 to 100",
  });
  return z.NEVER;
});

const penalty = z.number({ error: "must be a number" })
  .min(-2, "must be between -2 and 2")
  .max(2, "must be between -2 and 2");

const completionRequestSchema = z.looseObject({
  model: shortString.nullish(),
  messages: cappedArray(messageSchema, {
    max: MAX_MESSAGES,
    items: "messages",
    tooFew: { min: 1, problem: "must hold at least one message" },
  }),
  stream: z.boolean({ error: "must be a boolean" }).nullish(),
  stream_options: z.looseObject({
    include_usage: z.boolean({ error: "must be a boolean" }).nullish(),
  }, { error: "must be an object" }).nullish(),
  temperature: z.number({ error: "must be a number" })
    .min(0, "must be between 0 and 2")
    .max(2, "must be between 0 and 2")
    .nullish(),
  top_p: z.number({ error: "must be a number" })
    .min(0, "must be between 0 and 1")
    .max(1, "must be between 0 and 1")
    .nullish(),
  max_tokens: z.int({ error: "must be an integer" }).positive("must be positive").nullish(),
  max_completion_tokens: z.int({ error: "must be an integer" })
    .positive("must be positive")
    .nullish(),
  stop: z.union([
    shortString,
    cappedArray(shortString, { max: MAX_STOP_SEQUENCES, items: "strings" }),
  ], {
    error:
      `must be a string or an array of at most ${MAX_STOP_SEQUENCES} strings of at most ${MAX_SHORT_CHARS} characters`,
  }).nullish(),
  seed: z.int({ error: "must be an integer" }).nullish(),
  frequency_penalty: penalty.nullish(),
  presence_penalty: penalty.nullish(),
  logit_bias: logitBiasSchema.nullish(),
  n: z.int({ error: "must be an integer" }).min(1, "must be 1").max(
    1,
    "must be 1: the gateway answers with one choice",
  ).nullish(),
  // The worker keeps the reply's text, not its tokens: asking for them would get nothing back.
  logprobs: z.boolean({ error: "must be a boolean" }).refine(
    (on) => !on,
    "log probabilities are not returned by this gateway: leave logprobs out or false",
  ).nullish(),
  top_logprobs: z.int({ error: "must be an integer" }).refine(
    (n) => n === 0,
    "log probabilities are not returned by this gateway: leave top_logprobs out or 0",
  ).nullish(),
  response_format: z.looseObject({
    type: z.enum(["text", "json_object", "json_schema"], {
      error: 'must be "text", "json_object" or "json_schema"',
    }),
  }, { error: "must be an object with a type" }).nullish(),
  tools: cappedArray(functionToolSchema, { max: MAX_TOOLS, items: "tools" }).nullish(),
  tool_choice: toolChoiceSchema.nullish(),
  parallel_tool_calls: z.boolean({ error: "must be a boolean" }).nullish(),
  reasoning_effort: shortString.nullish(),
  user: shortString.nullish(),
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

type ParsedMessage = Infer<typeof messageObject>;

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
  part: Infer<typeof textPartSchema> | Infer<typeof imagePartSchema>,
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
