/**
 * The body of `POST /v1/messages` and `POST /v1/messages/count_tokens`
 * (Anthropic's Messages API), checked against a schema. Every field and block
 * is known by name: one the gateway cannot honour is named in the 400, never
 * dropped. Three hints that mean nothing away from Anthropic's servers are
 * taken and ignored: `metadata`, `cache_control` and a text block's
 * `citations`. lib/http/anthropic_translation.ts turns the result into chat
 * messages and backend fields.
 */
import * as z from "zod/mini";
import type { FieldProblem } from "./errors.ts";
import {
  cappedArray,
  imageUrlSchema,
  MAX_MESSAGES,
  MAX_SHORT_CHARS,
  MAX_TEXT_CHARS,
} from "./request_fields.ts";
import { asRaw, zodProblems } from "./validation.ts";

/** Stop sequences one request may give; Anthropic sets no small limit, and each costs the backend a check. */
export const MAX_STOP_SEQUENCES = 16;
/** Tools one request may define. */
const MAX_TOOLS = 128;
/** Blocks one message may hold: an agent's turn can answer many tool calls at once. */
const MAX_BLOCKS = 256;
/** The image types Anthropic takes. */
const IMAGE_TYPES = ["image/jpeg", "image/png", "image/gif", "image/webp"] as const;
/** Anthropic's smallest thinking budget. */
const MIN_THINKING_BUDGET = 1024;

const shortString = z.string({ error: "must be a string" })
  .check(z.maxLength(MAX_SHORT_CHARS, `must be at most ${MAX_SHORT_CHARS} characters`));
const nonEmptyShortString = shortString.check(z.minLength(1, "must not be empty"));
const longText = z.string({ error: "must be a string" })
  .check(z.maxLength(MAX_TEXT_CHARS, `must be at most ${MAX_TEXT_CHARS} characters`));
const boolean = z.boolean({ error: "must be a boolean" });
// abort keeps an integer beyond 2^53 to one problem, as in completion_request.ts.
const integer = z.int({ error: "must be an integer", abort: true });
const positiveInteger = integer.check(z.positive("must be positive"));
const jsonObject = z.custom<Record<string, unknown>>(
  (value) => typeof value === "object" && value !== null && !Array.isArray(value),
  { error: (issue) => issue.input === undefined ? "is required" : "must be a JSON object" },
);

function between(low: number, high: number) {
  const message = `must be between ${low} and ${high}`;
  return z.number({ error: "must be a number" }).check(z.gte(low, message), z.lte(high, message));
}

/** A caching hint: Anthropic's servers cache prompts; the backends here get no such hint. */
const ignoredHint = z.nullish(
  z.looseObject({ type: shortString }, { error: "must be an object with a type" }),
);

/** A `type` the gateway does not take, named with what it does take. */
function unsupportedType(what: string, supported: string) {
  return (issue: { input?: unknown }) => {
    // A union reports the whole object; a literal, the type alone.
    const type = typeof issue.input === "string"
      ? issue.input
      : (issue.input as { type?: unknown } | null)?.type;
    return typeof type === "string"
      ? `"${type}" ${what} are not supported by this gateway: use ${supported}`
      : `must be an object with a type: ${supported}`;
  };
}

const textBlock = z.strictObject({
  type: z.literal("text"),
  text: longText,
  cache_control: ignoredHint,
  citations: z.nullish(cappedArray(z.unknown(), { max: MAX_BLOCKS, items: "citations" })),
});

const base64Source = z.strictObject({
  type: z.literal("base64"),
  media_type: z.enum(IMAGE_TYPES, {
    error: `must be ${IMAGE_TYPES.slice(0, -1).map((t) => `"${t}"`).join(", ")} or "${
      IMAGE_TYPES.at(-1)
    }"`,
  }),
  data: z.string({ error: "must be a string" }).check(z.minLength(1, "must not be empty")),
}).check(z.check((payload) => {
  const { media_type, data } = payload.value;
  const problem = imageUrlSchema.safeParse(`data:${media_type};base64,${data}`).error;
  if (problem) {
    payload.issues.push({
      code: "custom",
      input: data,
      path: ["data"],
      message: "must be standard base64 (not base64url)",
    });
  }
}));

const urlSource = z.strictObject({ type: z.literal("url"), url: imageUrlSchema });

const imageBlock = z.strictObject({
  type: z.literal("image"),
  source: z.discriminatedUnion("type", [base64Source, urlSource], {
    error: unsupportedType("image sources", '"base64" or "url"'),
  }),
  cache_control: ignoredHint,
});

const toolUseBlock = z.strictObject({
  type: z.literal("tool_use"),
  id: nonEmptyShortString,
  name: nonEmptyShortString,
  input: jsonObject,
  cache_control: ignoredHint,
  // What a response's block says of who called the tool: always the model here.
  caller: z.optional(z.strictObject({
    type: z.literal("direct", { error: 'must be "direct": the gateway runs no tools itself' }),
  })),
});

/**
 * A string or an array of blocks. A union of the two would report only "no
 * option matched"; choosing by the value's kind keeps each problem on its
 * block, e.g. `messages[1].content[2].text`.
 */
function stringOrBlocks<T extends z.core.SomeType>(block: T, items = "content blocks") {
  const blocks = cappedArray(block, {
    max: MAX_BLOCKS,
    items,
    tooFew: { min: 1, problem: `must hold at least one block` },
  });
  return z.transform((value: unknown, ctx): string | z.infer<T>[] => {
    if (typeof value === "string") {
      const text = longText.safeParse(value, { reportInput: true });
      if (text.success) return text.data;
      ctx.issues.push(...asRaw(text.error.issues));
    } else if (Array.isArray(value)) {
      const parsed = blocks.safeParse(value, { reportInput: true });
      if (parsed.success) return parsed.data;
      ctx.issues.push(...asRaw(parsed.error.issues));
    } else {
      const message = value === undefined
        ? "is required"
        : `must be a string or an array of ${items}`;
      ctx.issues.push({ code: "custom", input: value, message });
    }
    return z.NEVER;
  });
}

const toolResultBlock = z.strictObject({
  type: z.literal("tool_result"),
  tool_use_id: nonEmptyShortString,
  content: z.optional(
    stringOrBlocks(
      z.discriminatedUnion("type", [textBlock, imageBlock], {
        error: unsupportedType("blocks in a tool result", '"text" or "image"'),
      }),
    ),
  ),
  is_error: z.optional(boolean),
  cache_control: ignoredHint,
});

const thinkingBlock = z.strictObject({
  type: z.literal("thinking"),
  thinking: longText,
  signature: z.optional(longText),
});

const contentBlock = z.discriminatedUnion(
  "type",
  [textBlock, imageBlock, toolUseBlock, toolResultBlock, thinkingBlock],
  {
    error: unsupportedType(
      "blocks",
      '"text", "image", "tool_use", "tool_result" or "thinking"',
    ),
  },
);

const messageSchema = z.strictObject({
  role: z.enum(["user", "assistant", "system"], {
    error: 'must be "user", "assistant" or "system"',
  }),
  content: stringOrBlocks(contentBlock),
}, { error: "must be an object with role and content" });

const toolSchema = z.strictObject({
  name: nonEmptyShortString,
  description: z.optional(longText),
  input_schema: jsonObject,
  type: z.nullish(z.literal("custom", {
    error: unsupportedType(
      "tools (Anthropic's own, run on its servers)",
      'a custom tool: { "name", "description", "input_schema" }',
    ),
  })),
  strict: z.optional(boolean),
  // The arguments of a call always arrive at once here: eager streaming changes nothing.
  eager_input_streaming: z.nullish(boolean),
  cache_control: ignoredHint,
}, { error: "must be a tool object" });

const parallelSwitch = { disable_parallel_tool_use: z.optional(boolean) };
const toolChoiceSchema = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("auto"), ...parallelSwitch }),
  z.strictObject({ type: z.literal("any"), ...parallelSwitch }),
  z.strictObject({ type: z.literal("tool"), name: nonEmptyShortString, ...parallelSwitch }),
  z.strictObject({ type: z.literal("none") }),
], { error: unsupportedType("tool choices", '"auto", "any", "tool" or "none"') });

const thinkingDisplay = {
  display: z.nullish(z.enum(["summarized", "omitted"], {
    error: 'must be "summarized" or "omitted"',
  })),
};
const thinkingSchema = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("enabled"),
    budget_tokens: integer.check(
      z.gte(MIN_THINKING_BUDGET, `must be at least ${MIN_THINKING_BUDGET}`),
    ),
    ...thinkingDisplay,
  }),
  z.strictObject({ type: z.literal("adaptive"), ...thinkingDisplay }),
  z.strictObject({ type: z.literal("disabled") }),
], { error: unsupportedType("thinking settings", '"enabled", "adaptive" or "disabled"') });

const outputConfigSchema = z.strictObject({
  effort: z.nullish(z.enum(["low", "medium", "high"], {
    error: 'must be "low", "medium" or "high": the backends take no higher effort',
  })),
  format: z.nullish(z.strictObject({
    type: z.literal("json_schema", { error: 'must be "json_schema"' }),
    schema: jsonObject,
  }, { error: "must be an object with a type and a schema" })),
}, { error: "must be an object" });

/** The fields both routes read: what makes the prompt. */
const promptShape = {
  model: nonEmptyShortString,
  messages: cappedArray(messageSchema, {
    max: MAX_MESSAGES,
    items: "messages",
    tooFew: { min: 1, problem: "must hold at least one message" },
  }),
  system: z.nullish(stringOrBlocks(textBlock, "text blocks")),
  tools: z.nullish(cappedArray(toolSchema, { max: MAX_TOOLS, items: "tools" })),
  tool_choice: z.nullish(toolChoiceSchema),
  thinking: z.nullish(thinkingSchema),
  output_config: z.nullish(outputConfigSchema),
  cache_control: ignoredHint,
};

const createSchema = z.strictObject({
  ...promptShape,
  max_tokens: positiveInteger,
  stop_sequences: z.nullish(
    cappedArray(nonEmptyShortString, { max: MAX_STOP_SEQUENCES, items: "stop sequences" }),
  ),
  stream: z.nullish(boolean),
  temperature: z.nullish(between(0, 1)),
  top_p: z.nullish(between(0, 1)),
  top_k: z.nullish(positiveInteger),
  // Anthropic's abuse tracking; nothing here reads it.
  metadata: z.nullish(
    z.looseObject({ user_id: z.nullish(shortString) }, { error: "must be an object" }),
  ),
}, { error: "must be a JSON object" });

const countSchema = z.strictObject(promptShape, { error: "must be a JSON object" });

/** A checked `POST /v1/messages` body. */
export type CreateMessageBody = z.infer<typeof createSchema>;
/** A checked `POST /v1/messages/count_tokens` body. */
export type CountTokensBody = z.infer<typeof countSchema>;
/** One message of either. */
export type MessageParam = z.infer<typeof messageSchema>;
/** One block of a message. */
export type ContentBlockParam = z.infer<typeof contentBlock>;
/** A text block, as `system` may hold. */
export type TextBlockParam = z.infer<typeof textBlock>;
/** A tool definition. */
export type ToolParam = z.infer<typeof toolSchema>;

/** The result of checking a body: the body, or every problem found. */
export type Checked<T> = { body: T; problems: [] } | { body?: undefined; problems: FieldProblem[] };

/** Checks a `POST /v1/messages` body against the schema. */
export function checkCreateBody(body: unknown): Checked<CreateMessageBody> {
  const result = createSchema.safeParse(body, { reportInput: true });
  return result.success
    ? { body: result.data, problems: [] }
    : { problems: schemaProblems(result.error.issues) };
}

/** Checks a `POST /v1/messages/count_tokens` body against the schema. */
export function checkCountBody(body: unknown): Checked<CountTokensBody> {
  const result = countSchema.safeParse(body, { reportInput: true });
  return result.success
    ? { body: result.data, problems: [] }
    : { problems: schemaProblems(result.error.issues) };
}

/** Field problems of zod's issues; a field the schema does not know is named on its own. */
function schemaProblems(issues: readonly z.core.$ZodIssue[]): FieldProblem[] {
  return issues.flatMap((issue) => {
    if (issue.code !== "unrecognized_keys") return zodProblems([issue]);
    const [at] = zodProblems([issue]);
    const prefix = issue.path.length === 0 ? "" : `${at.param}.`;
    return issue.keys.map((key) => ({
      param: `${prefix}${key}`,
      message: "is not supported by this gateway",
    }));
  });
}
