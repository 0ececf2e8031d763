/**
 * The `input` of `POST /v1/responses`, checked and turned into the chat
 * messages every OpenAI-compatible backend takes: messages with text and
 * image parts, an assistant's earlier output, function calls and their
 * outputs, and reasoning (kept on the assistant message it came before).
 * What a chat cannot carry (files, built-in tools' calls) is refused by name,
 * never dropped. (An `item_reference` is replaced by its item before, see
 * lib/http/responses_history.ts.)
 */
import * as z from "zod/mini";
import type { ChatMessage, ContentPart, ToolCall } from "../core/messages.ts";
import { type FieldProblem } from "./errors.ts";
import {
  imageUrlSchema,
  MAX_CONTENT_PARTS,
  MAX_IMAGES,
  MAX_MESSAGES,
  MAX_REQUEST_IMAGES,
  MAX_SHORT_CHARS,
  MAX_TEXT_CHARS,
} from "./request_fields.ts";
import { zodProblems } from "./validation.ts";

/** A chat made from input items, with the field each message came from. */
export interface InputChat {
  messages: ChatMessage[];
  /** Where each message came from, for problems found later: `input[2]`, or `input` for a string. */
  origins: string[];
}

const longText = z.string({ error: "must be a string" })
  .check(z.maxLength(MAX_TEXT_CHARS, `must be at most ${MAX_TEXT_CHARS} characters`));
const id = z.string({ error: "must be a string" }).check(
  z.minLength(1, "must not be empty"),
  z.maxLength(MAX_SHORT_CHARS, `must be at most ${MAX_SHORT_CHARS} characters`),
);

const messageItem = z.object({
  role: z.enum(["user", "assistant", "system", "developer"], {
    error: 'must be "user", "assistant", "system" or "developer"',
  }),
  content: z.unknown(),
});
const functionCallItem = z.object({ call_id: id, name: id, arguments: longText });
const functionOutputItem = z.object({ call_id: id, output: z.unknown() });
const textPiece = z.object({ text: longText });
const reasoningItem = z.object({
  summary: z.optional(z.array(textPiece, { error: "must be an array of summary_text parts" })),
  content: z.nullish(z.array(textPiece, { error: "must be an array of reasoning_text parts" })),
});

/** Why an item type the Responses API has is not taken here. */
const REFUSED_ITEMS: Record<string, string> = {
  item_reference: "an item_reference must name an output item of a stored response by its id",
  compaction: "compaction items are not supported: send the items themselves",
};

/** Turns `input` into chat messages, or lists what is wrong with it. */
export function parseInput(value: unknown): { chat?: InputChat; problems: FieldProblem[] } {
  if (typeof value === "string") {
    const text = longText.safeParse(value);
    if (!text.success) {
      return { problems: [{ param: "input", message: text.error.issues[0].message }] };
    }
    return {
      chat: { messages: [{ role: "user", content: value }], origins: ["input"] },
      problems: [],
    };
  }
  if (!Array.isArray(value)) {
    const message = value === undefined || value === null
      ? "is required"
      : "must be a string or an array of input items";
    return { problems: [{ param: "input", message }] };
  }
  if (value.length === 0) {
    return { problems: [{ param: "input", message: "must hold at least one item" }] };
  }
  if (value.length > MAX_MESSAGES) {
    return {
      problems: [{
        param: "input",
        message: `must hold at most ${MAX_MESSAGES} items, got ${value.length}`,
      }],
    };
  }
  const builder = new ChatBuilder();
  value.forEach((item, i) => builder.add(item, `input[${i}]`));
  const problems = [...builder.problems, ...imageCountProblems(builder.chat)];
  return problems.length > 0 ? { problems } : { chat: builder.chat, problems };
}

/** Builds the chat item by item: function calls join the assistant message before them. */
class ChatBuilder {
  readonly chat: InputChat = { messages: [], origins: [] };
  readonly problems: FieldProblem[] = [];
  /** Reasoning waiting for the assistant message it came before. */
  #reasoning = "";

  add(item: unknown, at: string): void {
    if (typeof item !== "object" || item === null || Array.isArray(item)) {
      this.#problem(at, "must be an input item object");
      return;
    }
    const type = (item as { type?: unknown }).type ?? "message";
    if (type === "message") this.#message(item, at);
    else if (type === "function_call") this.#functionCall(item, at);
    else if (type === "function_call_output") this.#functionOutput(item, at);
    else if (type === "reasoning") this.#reasoningItem(item, at);
    else if (typeof type === "string" && Object.hasOwn(REFUSED_ITEMS, type)) {
      this.#problem(`${at}.type`, REFUSED_ITEMS[type]);
    } else if (typeof type === "string" && /_(call|output)$/.test(type)) {
      this.#problem(
        `${at}.type`,
        `"${type}" items are not supported: this gateway's backends run only function tools`,
      );
    } else {
      this.#problem(
        `${at}.type`,
        'must be "message", "function_call", "function_call_output" or "reasoning"',
      );
    }
  }

  #message(item: object, at: string): void {
    const parsed = this.#parse(messageItem, item, at);
    if (!parsed) return;
    const role = parsed.role === "developer" ? "system" : parsed.role;
    const content = contentOf(parsed.content, role, `${at}.content`, this.problems);
    if (content === undefined) return;
    if (role === "assistant") {
      this.#push({ role, content: textOf(content), ...this.#takeReasoning() }, at);
    } else if (role === "system") {
      this.#push({ role, content: textOf(content) }, at);
    } else {
      this.#push({ role, content }, at);
    }
  }

  #functionCall(item: object, at: string): void {
    const parsed = this.#parse(functionCallItem, item, at);
    if (!parsed) return;
    const call: ToolCall = {
      id: parsed.call_id,
      type: "function",
      function: { name: parsed.name, arguments: parsed.arguments },
    };
    const last = this.chat.messages.at(-1);
    // A reply's text and its calls are one assistant message in a chat.
    if (last?.role === "assistant") {
      last.tool_calls = [...last.tool_calls ?? [], call];
      const reasoning = this.#takeReasoning().reasoning_content;
      if (reasoning) last.reasoning_content = (last.reasoning_content ?? "") + reasoning;
      return;
    }
    this.#push(
      { role: "assistant", content: null, tool_calls: [call], ...this.#takeReasoning() },
      at,
    );
  }

  #functionOutput(item: object, at: string): void {
    const parsed = this.#parse(functionOutputItem, item, at);
    if (!parsed) return;
    const content = contentOf(parsed.output, "tool", `${at}.output`, this.problems);
    if (content === undefined) return;
    this.#push({ role: "tool", tool_call_id: parsed.call_id, content: textOf(content) }, at);
  }

  #reasoningItem(item: object, at: string): void {
    const parsed = this.#parse(reasoningItem, item, at);
    if (!parsed) return;
    // Its text, or its summary when it has none (OpenAI's own reasoning is encrypted).
    const pieces = parsed.content?.length ? parsed.content : parsed.summary ?? [];
    this.#reasoning += pieces.map((p) => p.text).join("\n");
  }

  #takeReasoning(): { reasoning_content?: string } {
    const reasoning = this.#reasoning;
    this.#reasoning = "";
    return reasoning ? { reasoning_content: reasoning } : {};
  }

  #push(message: ChatMessage, at: string): void {
    this.chat.messages.push(message);
    this.chat.origins.push(at);
  }

  #parse<T>(schema: z.ZodMiniType<T>, item: unknown, at: string): T | undefined {
    const result = schema.safeParse(item, { reportInput: true });
    if (result.success) return result.data;
    for (const problem of zodProblems(result.error.issues)) {
      this.problems.push({ param: `${at}.${problem.param}`, message: problem.message });
    }
    return undefined;
  }

  #problem(param: string, message: string): void {
    this.problems.push({ param, message });
  }
}

/**
 * A message's content as a chat holds it: a string as it is, parts as text
 * and image parts. Only a user message holds images; files are refused.
 */
function contentOf(
  value: unknown,
  role: ChatMessage["role"],
  at: string,
  problems: FieldProblem[],
): string | ContentPart[] | undefined {
  if (typeof value === "string") {
    if (value.length <= MAX_TEXT_CHARS) return value;
    problems.push({ param: at, message: `must be at most ${MAX_TEXT_CHARS} characters` });
    return undefined;
  }
  if (!Array.isArray(value) || value.length === 0 || value.length > MAX_CONTENT_PARTS) {
    problems.push({
      param: at,
      message: value === undefined
        ? "is required"
        : `must be a string or an array of 1 to ${MAX_CONTENT_PARTS} content parts`,
    });
    return undefined;
  }
  const before = problems.length;
  const parts = value.map((part, i) => partOf(part, role, `${at}[${i}]`, problems));
  return problems.length > before ? undefined : parts.filter((p) => p !== undefined);
}

function partOf(
  part: unknown,
  role: ChatMessage["role"],
  at: string,
  problems: FieldProblem[],
): ContentPart | undefined {
  const type = (part as { type?: unknown } | null)?.type;
  const refuse = (param: string, message: string) => {
    problems.push({ param, message });
    return undefined;
  };
  if (type === "input_text" || type === "output_text" || type === "refusal") {
    const field = type === "refusal" ? "refusal" : "text";
    const text = (part as Record<string, unknown>)[field];
    if (typeof text !== "string") return refuse(`${at}.${field}`, "must be a string");
    if (text.length > MAX_TEXT_CHARS) {
      return refuse(`${at}.${field}`, `must be at most ${MAX_TEXT_CHARS} characters`);
    }
    return { type: "text", text };
  }
  if (type === "input_image") {
    if (role !== "user") return refuse(`${at}.type`, "only a user message holds images");
    const { image_url: url, file_id: fileId } = part as { image_url?: unknown; file_id?: unknown };
    if (fileId !== undefined && fileId !== null) {
      return refuse(
        `${at}.file_id`,
        "files are not kept by this gateway: send the image as image_url (an https or data: URL)",
      );
    }
    const checked = imageUrlSchema.safeParse(url);
    if (!checked.success) {
      return refuse(
        `${at}.image_url`,
        url === undefined || url === null ? "is required" : checked.error.issues[0].message,
      );
    }
    return { type: "image_url", image_url: { url: checked.data } };
  }
  if (type === "input_file") {
    return refuse(
      `${at}.type`,
      "input_file is not supported: a chat backend takes text and images; send the file's text as input_text",
    );
  }
  return refuse(`${at}.type`, 'must be "input_text", "input_image" or "output_text"');
}

/** The text of content that holds no image. */
function textOf(content: string | ContentPart[]): string {
  if (typeof content === "string") return content;
  return content.map((p) => p.type === "text" ? p.text : "").join("\n");
}

/** Images are fetched for the backend: a few in the message answered, a bounded number in all. */
function imageCountProblems(chat: InputChat): FieldProblem[] {
  const counts = chat.messages.map((m) =>
    Array.isArray(m.content) ? m.content.filter((p) => p.type === "image_url").length : 0
  );
  const problems: FieldProblem[] = [];
  if ((counts.at(-1) ?? 0) > MAX_IMAGES) {
    problems.push({
      param: `${chat.origins.at(-1)}.content`,
      message: `must hold at most ${MAX_IMAGES} images, got ${counts.at(-1)}`,
    });
  }
  const total = counts.reduce((sum, n) => sum + n, 0);
  if (total > MAX_REQUEST_IMAGES) {
    problems.push({
      param: "input",
      message: `must hold at most ${MAX_REQUEST_IMAGES} images in all, got ${total}`,
    });
  }
  return problems;
}

/** The last message must be one a model answers: a user's, or a function's output. */
export function lastItemProblem(
  messages: readonly ChatMessage[],
  origins: readonly string[],
): FieldProblem | undefined {
  const last = messages.at(-1);
  if (!last || last.role === "user" || last.role === "tool") return undefined;
  return {
    param: origins.at(-1) ?? "input",
    message: last.role === "assistant" && last.tool_calls?.length
      ? "a function_call must be followed by its function_call_output"
      : "the last item must be a user message or a function_call_output: it is what the model answers",
  };
}

/**
 * Function calls and outputs that do not pair up, which a backend would
 * refuse or misread: a call without its output before the next message, an
 * output without its call. `origins` names where each message came from
 * (`previous_response_id` for the stored chat a response continues).
 */
export function toolCallProblems(
  messages: readonly ChatMessage[],
  origins: readonly string[],
): FieldProblem[] {
  const problems: FieldProblem[] = [];
  let open = new Map<string, string>(); // call id -> where it was made
  messages.forEach((m, i) => {
    if (m.role === "tool") {
      if (!open.delete(m.tool_call_id ?? "")) {
        problems.push({
          param: `${origins[i]}.call_id`,
          message: `no function_call just before it has call_id "${m.tool_call_id}"`,
        });
      }
      return;
    }
    for (const [callId, where] of open) {
      problems.push({
        param: where === "previous_response_id" ? "input" : where,
        message: `function call "${callId}" needs its function_call_output before the next message`,
      });
    }
    open = new Map(m.tool_calls?.map((call) => [call.id, origins[i]]) ?? []);
  });
  return problems;
}
