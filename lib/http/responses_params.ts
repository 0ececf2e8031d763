/**
 * The fields of a Responses request that go to the backend, in the shape of
 * a chat completion, and back again for the response object: function tools
 * (flat in Responses, nested in chat), `tool_choice`, `text.format` (chat's
 * `response_format`), `reasoning.effort` (chat's `reasoning_effort`),
 * `max_output_tokens` (chat's `max_tokens`) and sampling.
 */
import type { CompletionParams } from "../core/jobs.ts";

/** A function tool as the Responses API declares it. */
export interface FunctionTool {
  type: "function";
  name: string;
  description?: string | null;
  parameters?: Record<string, unknown> | null;
  strict?: boolean | null;
}

/** `tool_choice` as the Responses API has it. */
export type ToolChoice = "none" | "auto" | "required" | { type: "function"; name: string };

/** `text.format`: plain text, any JSON, or JSON that fits a schema. */
export type TextFormat =
  | { type: "text" }
  | { type: "json_object" }
  | {
    type: "json_schema";
    name: string;
    schema: Record<string, unknown>;
    strict?: boolean | null;
    description?: string | null;
  };

/** The Responses fields that become backend fields. */
export interface ResponsesFields {
  tools?: FunctionTool[];
  tool_choice?: ToolChoice;
  parallel_tool_calls?: boolean;
  temperature?: number;
  top_p?: number;
  max_output_tokens?: number;
  format?: TextFormat;
  effort?: string;
  user?: string;
}

/** The backend's fields for a Responses request, as a chat completion names them. */
export function chatParams(fields: ResponsesFields): CompletionParams {
  const params: Record<string, unknown> = {};
  if (fields.tools) {
    params.tools = fields.tools.map(({ name, description, parameters, strict }) => ({
      type: "function",
      function: {
        name,
        ...(description != null ? { description } : {}),
        ...(parameters != null ? { parameters } : {}),
        ...(strict != null ? { strict } : {}),
      },
    }));
  }
  const choice = fields.tool_choice;
  if (choice !== undefined) {
    params.tool_choice = typeof choice === "string"
      ? choice
      : { type: "function", function: { name: choice.name } };
  }
  if (fields.parallel_tool_calls !== undefined) {
    params.parallel_tool_calls = fields.parallel_tool_calls;
  }
  if (fields.temperature !== undefined) params.temperature = fields.temperature;
  if (fields.top_p !== undefined) params.top_p = fields.top_p;
  if (fields.max_output_tokens !== undefined) params.max_tokens = fields.max_output_tokens;
  const format = fields.format;
  if (format?.type === "json_object") params.response_format = { type: "json_object" };
  if (format?.type === "json_schema") {
    const { type: _type, ...schema } = format;
    params.response_format = { type: "json_schema", json_schema: withoutNulls(schema) };
  }
  if (fields.effort !== undefined) params.reasoning_effort = fields.effort;
  if (fields.user !== undefined) params.user = fields.user;
  return params;
}

/** Which Responses field a backend's field came from, to name it in a refusal. */
export const RESPONSES_FIELD: Readonly<Record<string, string>> = {
  reasoning_effort: "reasoning.effort",
  max_tokens: "max_output_tokens",
  response_format: "text.format",
};

/** The request's fields as a response object repeats them. */
export interface EchoedFields {
  tools: FunctionTool[];
  tool_choice: ToolChoice;
  parallel_tool_calls: boolean;
  temperature: number | null;
  top_p: number | null;
  max_output_tokens: number | null;
  text: { format: TextFormat; verbosity: "medium" };
  reasoning: { effort: string | null; summary: null };
  user?: string;
}

/** The Responses fields again, from the backend's fields a job keeps. */
export function echoedFields(params: CompletionParams | undefined): EchoedFields {
  const p = (params ?? {}) as Record<string, unknown>;
  const tools = (p.tools as { function: Omit<FunctionTool, "type"> }[] | undefined) ?? [];
  const choice = p.tool_choice as string | { function: { name: string } } | undefined;
  const format = p.response_format as
    | { type: "json_object" }
    | { type: "json_schema"; json_schema: Omit<TextFormat & { type: "json_schema" }, "type"> }
    | undefined;
  const echoed: EchoedFields = {
    tools: tools.map(({ function: f }) => ({
      type: "function",
      name: f.name,
      description: f.description ?? null,
      parameters: f.parameters ?? null,
      strict: f.strict ?? null,
    })),
    tool_choice: choice === undefined
      ? "auto"
      : typeof choice === "string"
      ? choice as ToolChoice
      : { type: "function", name: choice.function.name },
    parallel_tool_calls: p.parallel_tool_calls !== false,
    temperature: (p.temperature as number | undefined) ?? null,
    top_p: (p.top_p as number | undefined) ?? null,
    max_output_tokens: (p.max_tokens as number | undefined) ?? null,
    text: {
      format: format?.type === "json_schema"
        ? { type: "json_schema", ...format.json_schema }
        : format ?? { type: "text" },
      verbosity: "medium",
    },
    reasoning: { effort: (p.reasoning_effort as string | undefined) ?? null, summary: null },
  };
  if (typeof p.user === "string") echoed.user = p.user;
  return echoed;
}

function withoutNulls(fields: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(fields).filter(([, value]) => value != null));
}
