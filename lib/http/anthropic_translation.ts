/**
 * Anthropic's Messages request, translated into the chat messages and fields
 * every OpenAI-compatible backend takes, so it runs as a chat completion job
 * on any of them:
 * - `system` (a string or text blocks) is the first system message;
 * - a user message becomes its tool results first, one `tool` message each
 *   (an error result says so: its text starts with "Error: "), then one user
 *   message with the rest: images a tool returned, then its own text and
 *   images (base64 sources as data: URLs);
 * - an assistant message's text blocks are its content, its `tool_use`
 *   blocks its tool calls, its thinking blocks its reasoning;
 * - `tools` become function tools, `tool_choice` OpenAI's (`any` is
 *   "required"; `none` sends no tools at all, so no backend can call one),
 *   `stop_sequences` is `stop`, `output_config` is `reasoning_effort` and
 *   `response_format`; `max_tokens`, `temperature`, `top_p` and `top_k` pass
 *   through.
 */
import type { ChatMessage, ContentPart, ToolCall } from "../core/messages.ts";
import { type FieldProblem, invalidRequest } from "./errors.ts";
import {
  checkCountBody,
  checkCreateBody,
  type ContentBlockParam,
  type CountTokensBody,
  type MessageParam,
  type TextBlockParam,
} from "./anthropic_request.ts";
import { MAX_IMAGES, MAX_REQUEST_IMAGES } from "./request_fields.ts";

/** A checked `POST /v1/messages` request, in the backend's terms. */
export interface MessagesRequest {
  model: string;
  /** The chat as the backend gets it, system prompt first. */
  messages: ChatMessage[];
  /** The index of the request's last message in its `messages`. */
  lastIndex: number;
  /** How many of `messages`, at the end, the request's last message became. */
  lastTurn: number;
  /** Fields for the backend: `max_tokens`, sampling, `stop`, tools… */
  params: Record<string, unknown>;
  stream: boolean;
  stopSequences: string[];
  /** Whether the reply's reasoning is shown as thinking blocks (`thinking` asks for them). */
  showThinking: boolean;
  /** The body as checked, for the checks that depend on the backend. */
  body: { top_k?: number | null; tool_choice?: CountTokensBody["tool_choice"] };
}

/** A checked `POST /v1/messages/count_tokens` request. */
export interface CountRequest {
  model: string;
  messages: ChatMessage[];
  /** The function tools the backend would get, counted with the messages. */
  tools?: unknown[];
}

/** Parses a `POST /v1/messages` body, or throws a 400 naming every problem. */
export function parseMessagesRequest(body: unknown): MessagesRequest {
  const checked = checkCreateBody(body);
  if (!checked.body) throw invalidRequest(checked.problems);
  const data = checked.body;
  const problems = promptProblems(data);
  if (data.thinking?.type === "enabled" && data.thinking.budget_tokens >= data.max_tokens) {
    problems.push({
      param: "thinking.budget_tokens",
      message: `must be less than max_tokens (${data.max_tokens})`,
    });
  }
  const turns = data.messages.map(chatMessages);
  const messages = [...systemMessages(data.system), ...turns.flat()];
  problems.push(...imageCountProblems(data.messages.length - 1, turns));
  if (problems.length > 0) throw invalidRequest(problems);

  const params: Record<string, unknown> = { max_tokens: data.max_tokens };
  if (data.stop_sequences?.length) params.stop = data.stop_sequences;
  for (const field of ["temperature", "top_p", "top_k"] as const) {
    if (data[field] != null) params[field] = data[field];
  }
  Object.assign(params, toolFields(data), outputFields(data));
  const thinking = data.thinking;
  return {
    model: data.model,
    messages,
    lastIndex: data.messages.length - 1,
    lastTurn: turns.at(-1)!.length,
    params,
    stream: data.stream ?? false,
    stopSequences: data.stop_sequences ?? [],
    showThinking: thinking != null && thinking.type !== "disabled" &&
      thinking.display !== "omitted",
    body: { top_k: data.top_k, tool_choice: data.tool_choice },
  };
}

/** Parses a `POST /v1/messages/count_tokens` body, or throws a 400 naming every problem. */
export function parseCountRequest(body: unknown): CountRequest {
  const checked = checkCountBody(body);
  if (!checked.body) throw invalidRequest(checked.problems);
  const data = checked.body;
  const problems = promptProblems(data);
  if (problems.length > 0) throw invalidRequest(problems);
  const messages = [...systemMessages(data.system), ...data.messages.flatMap(chatMessages)];
  const tools = toolFields(data).tools as unknown[] | undefined;
  return { model: data.model, messages, ...(tools ? { tools } : {}) };
}

/** Which blocks each role's message may hold. */
const ROLE_BLOCKS: Record<MessageParam["role"], readonly ContentBlockParam["type"][]> = {
  user: ["text", "image", "tool_result"],
  assistant: ["text", "tool_use", "thinking"],
  system: ["text"],
};

/** What the schema cannot see: blocks in the wrong role, the last message's role, tool choice. */
function promptProblems(data: CountTokensBody): FieldProblem[] {
  const problems: FieldProblem[] = [];
  data.messages.forEach((m, i) => {
    if (typeof m.content === "string") return;
    m.content.forEach((block, j) => {
      if (!ROLE_BLOCKS[m.role].includes(block.type)) {
        problems.push({
          param: `messages[${i}].content[${j}].type`,
          message: `"${block.type}" blocks cannot be in ${m.role} messages`,
        });
      }
    });
  });
  const last = data.messages.length - 1;
  if (data.messages[last].role === "system") {
    problems.push({
      param: `messages[${last}].role`,
      message:
        'must be "user" or "assistant" (to continue its text): the last message is the one answered',
    });
  }
  const choice = data.tool_choice;
  const tools = data.tools ?? [];
  if ((choice?.type === "any" || choice?.type === "tool") && tools.length === 0) {
    problems.push({ param: "tool_choice", message: `"${choice.type}" needs tools` });
  }
  if (choice?.type === "tool" && tools.length > 0 && !tools.some((t) => t.name === choice.name)) {
    problems.push({
      param: "tool_choice.name",
      message: `must name one of the tools, got "${choice.name}"`,
    });
  }
  return problems;
}

function systemMessages(system: CountTokensBody["system"]): ChatMessage[] {
  if (system == null) return [];
  return [{ role: "system", content: textOf(system) }];
}

function textOf(content: string | TextBlockParam[]): string {
  return typeof content === "string" ? content : content.map((b) => b.text).join("\n\n");
}

/** The chat messages one Anthropic message becomes. */
function chatMessages(message: MessageParam): ChatMessage[] {
  const { role, content } = message;
  if (typeof content === "string") return [{ role, content }];
  if (role === "system") return [{ role, content: textOf(content as TextBlockParam[]) }];
  if (role === "assistant") return [assistantMessage(content)];
  const results: ChatMessage[] = [];
  const rest: ContentPart[] = [];
  for (const block of content) {
    if (block.type === "tool_result") {
      const { text, images } = toolResultParts(block);
      results.push({ role: "tool", tool_call_id: block.tool_use_id, content: text });
      if (images.length > 0) {
        rest.push({
          type: "text",
          text: `Images from the result of tool call ${block.tool_use_id}:`,
        });
        rest.push(...images);
      }
    } else if (block.type === "text") {
      rest.push({ type: "text", text: block.text });
    } else if (block.type === "image") {
      rest.push(imagePart(block));
    }
  }
  if (rest.length === 0) return results;
  const plain = rest.length === 1 && rest[0].type === "text";
  return [...results, { role: "user", content: plain ? (rest[0] as { text: string }).text : rest }];
}

function assistantMessage(blocks: readonly ContentBlockParam[]): ChatMessage {
  let text = "";
  let reasoning = "";
  const calls: ToolCall[] = [];
  for (const block of blocks) {
    if (block.type === "text") text += block.text;
    else if (block.type === "thinking") reasoning += block.thinking;
    else if (block.type === "tool_use") {
      calls.push({
        id: block.id,
        type: "function",
        function: { name: block.name, arguments: JSON.stringify(block.input) },
      });
    }
  }
  const message: ChatMessage = {
    role: "assistant",
    content: calls.length > 0 && text === "" ? null : text,
  };
  if (calls.length > 0) message.tool_calls = calls;
  if (reasoning) message.reasoning_content = reasoning;
  return message;
}

type ToolResultBlock = Extract<ContentBlockParam, { type: "tool_result" }>;
type ImageBlock = Extract<ContentBlockParam, { type: "image" }>;

/** A tool result's text (marked when the tool failed) and the images it returned. */
function toolResultParts(block: ToolResultBlock): { text: string; images: ContentPart[] } {
  const content = block.content ?? "";
  const blocks = typeof content === "string" ? [{ type: "text" as const, text: content }] : content;
  const text = blocks.flatMap((b) => b.type === "text" ? [b.text] : []).join("\n");
  const images = blocks.flatMap((b) => b.type === "image" ? [imagePart(b)] : []);
  return { text: block.is_error ? `Error: ${text}` : text, images };
}

function imagePart(block: ImageBlock): ContentPart {
  const { source } = block;
  const url = source.type === "base64"
    ? `data:${source.media_type};base64,${source.data}`
    : source.url;
  return { type: "image_url", image_url: { url } };
}

/** Images are fetched for the backend: a few in the message answered, a bounded number in all. */
function imageCountProblems(last: number, turns: readonly ChatMessage[][]): FieldProblem[] {
  const count = (messages: readonly ChatMessage[]) =>
    messages.reduce(
      (sum, m) =>
        sum +
        (Array.isArray(m.content) ? m.content.filter((p) => p.type === "image_url").length : 0),
      0,
    );
  const problems: FieldProblem[] = [];
  const inLast = count(turns[last]);
  if (inLast > MAX_IMAGES) {
    problems.push({
      param: `messages[${last}].content`,
      message: `must hold at most ${MAX_IMAGES} images, got ${inLast}`,
    });
  }
  const total = count(turns.flat());
  if (total > MAX_REQUEST_IMAGES) {
    problems.push({
      param: "messages",
      message: `must hold at most ${MAX_REQUEST_IMAGES} images in all, got ${total}`,
    });
  }
  return problems;
}

/** `tools` and `tool_choice` as OpenAI's fields; `none` leaves the tools out. */
function toolFields(data: CountTokensBody): Record<string, unknown> {
  const choice = data.tool_choice;
  if (!data.tools?.length || choice?.type === "none") return {};
  const fields: Record<string, unknown> = {
    tools: data.tools.map((tool) => ({
      type: "function",
      function: {
        name: tool.name,
        ...(tool.description !== undefined ? { description: tool.description } : {}),
        parameters: tool.input_schema,
        ...(tool.strict !== undefined ? { strict: tool.strict } : {}),
      },
    })),
  };
  if (choice?.type === "any") fields.tool_choice = "required";
  if (choice?.type === "tool") {
    fields.tool_choice = { type: "function", function: { name: choice.name } };
  }
  if (choice?.type === "auto") fields.tool_choice = "auto";
  if (choice?.disable_parallel_tool_use) fields.parallel_tool_calls = false;
  return fields;
}

/** `output_config` as OpenAI's `reasoning_effort` and `response_format`. */
function outputFields(data: CountTokensBody): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  const config = data.output_config;
  if (config?.effort) fields.reasoning_effort = config.effort;
  if (config?.format) {
    fields.response_format = {
      type: "json_schema",
      json_schema: { name: "output", schema: config.format.schema },
    };
  }
  return fields;
}
