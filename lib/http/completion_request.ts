/** The body of `POST /v1/chat/completions`, checked against a schema and normalized. */
import { type Infer, z } from "./schema.ts";
import { type FieldProblem, invalidRequest } from "./errors.ts";
import type { CompletionParams } from "../core/jobs.ts";
import type { ChatMessage, ContentPart } from "../core/messages.ts";
import { zodProblems } from "./validation.ts";

/** Stop sequences OpenAI allows in one request. */
const MAX_STOP_SEQUENCES = 4;

const textPartSchema = z.object({
  type: z.literal("text"),
  text: z.string({ error: "must be a string" }),
});

const imagePartSchema = z.object({
  type: z.literal("image_url"),
  image_url: z.object({
    url: z.string({ error: "must be a string" }).min(1, "must not be empty"),
    detail: z.string({ error: "must be a string" }).optional(),
  }, { error: "must be an object with a url string" }),
});

const partsSchema = z.array(
  z.discriminatedUnion("type", [textPartSchema, imagePartSchema], {
    error: 'must be a part of type "text" or "image_url"',
  }),
).min(1, "must hold at least one part");

// A union of string and parts would report only "no option matched"; choosing the
// schema by the value's kind keeps errors on the exact part, e.g. content[1].text.
const contentSchema = z.unknown().transform((value, ctx): string | ContentPart[] => {
  if (typeof value === "string") return value;
  if (Array.isArray(value)) {
    const result = partsSchema.safeParse(value, { reportInput: true });
    if (result.success) return result.data.map(toContentPart);
    for (const issue of result.error.issues) ctx.addIssue({ ...issue });
    return z.NEVER;
  }
  ctx.addIssue({ code: "custom", input: value, message: contentMessage(value) });
  return z.NEVER;
});

const messageSchema = z.object({
  role: z.enum(["system", "user", "assistant", "tool", "developer"], {
    error: 'must be "system", "user", "assistant" or "developer"',
  }).refine((role) => role !== "tool", "tool messages are not supported"),
  content: contentSchema,
  name: z.string({ error: "must be a string" }).optional(),
}, { error: "must be an object with role and content" });

const completionRequestSchema = z.looseObject({
  model: z.string({ error: "must be a string" }).nullish(),
  messages: z.array(messageSchema, { error: "must be an array of messages" })
    .min(1, "must hold at least one message"),
  stream: z.boolean({ error: "must be a boolean" }).nullish(),
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
    z.string(),
    z.array(z.string()).max(MAX_STOP_SEQUENCES),
  ], { error: `must be a string or an array of at most ${MAX_STOP_SEQUENCES} strings` }).nullish(),
  stream_options: z.looseObject({}, { error: "must be an object" }).nullish(),
}, { error: "must be a JSON object" });

/** A valid `POST /v1/chat/completions` body, normalized to our message shape. */
export interface CompletionRequest {
  model?: string;
  messages: ChatMessage[];
  stream: boolean;
  params: CompletionParams;
}

/** Parses an OpenAI chat completion request body, or throws a 400 listing every problem. */
export function parseCompletionRequest(body: unknown): CompletionRequest {
  const result = completionRequestSchema.safeParse(body, { reportInput: true });
  const problems = result.success ? [] : zodProblems(result.error.issues);
  const lastRole = lastRoleProblem(body);
  if (lastRole) problems.push(lastRole);
  if (!result.success || problems.length > 0) throw invalidRequest(problems);

  const data = result.data;
  const params: CompletionParams = {};
  if (data.temperature != null) params.temperature = data.temperature;
  if (data.top_p != null) params.top_p = data.top_p;
  const maxTokens = data.max_tokens ?? data.max_completion_tokens;
  if (maxTokens != null) params.max_tokens = maxTokens;
  if (data.stop != null) params.stop = data.stop;

  const request: CompletionRequest = {
    messages: data.messages.map((m) => ({
      role: m.role === "developer" ? "system" : m.role as ChatMessage["role"],
      content: m.content,
    })),
    stream: data.stream ?? false,
    params,
  };
  if (data.model != null) request.model = data.model;
  return request;
}

// Checked on the raw body so the problem is listed even when other messages are invalid.
function lastRoleProblem(body: unknown): FieldProblem | undefined {
  const messages = (body as { messages?: unknown } | null)?.messages;
  if (!Array.isArray(messages) || messages.length === 0) return undefined;
  const last = messages.length - 1;
  const role = (messages[last] as { role?: unknown } | null)?.role;
  // A missing, unknown or tool role is already reported by the schema.
  if (role !== "system" && role !== "assistant" && role !== "developer") return undefined;
  return {
    param: `messages[${last}].role`,
    message: `must be "user": the last message is the one answered, got "${role}"`,
  };
}

function contentMessage(value: unknown): string {
  if (value === undefined) return "is required";
  if (value === null) return "must not be null: tool calls are not supported";
  return "must be a string or an array of content parts";
}

function toContentPart(
  part: Infer<typeof textPartSchema> | Infer<typeof imagePartSchema>,
): ContentPart {
  if (part.type === "text") return { type: "text", text: part.text };
  return { type: "image_url", image_url: { url: part.image_url.url } };
}
