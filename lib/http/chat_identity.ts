/**
 * Which conversation a `POST /v1/chat/completions` request belongs to, if
 * any, and whether it is one of Open WebUI's background tasks (title, tags,
 * follow-ups, search queries, autocomplete), which must never touch stored
 * history.
 *
 * Open WebUI sends its chat id as `X-OpenWebUI-Chat-Id` only with
 * `ENABLE_FORWARD_USER_INFO_HEADERS=true`, or as any header a connection
 * defines with a placeholder such as `{{CHAT_ID}}`. Temporary chats use ids
 * like `local:<socket id>` that are neither stable nor private to a user, and
 * channels use `channel:<id>`: those are treated as no conversation at all.
 * A placeholder left unexpanded (`{{CHAT_ID}}`) counts as absent.
 */

/** Headers that name a server-side conversation, in the order they are read. */
export const CONVERSATION_HEADERS = ["x-conversation-id", "x-openwebui-chat-id"] as const;

/** The header a connection can set to `{{TASK}}` so task requests say what they are. */
export const TASK_HEADER = "x-openwebui-task";

/** Chat id prefixes of chats that keep no history: temporary chats and channels. */
const STATELESS_PREFIXES = ["local:", "local", "temporary:", "channel:"];

/** Prompt beginnings of Open WebUI's default task templates. */
const TASK_PROMPT = /^\s*### Task:/;

/** Where a completion request's conversation comes from. */
export type ChatIdentity =
  | { kind: "conversation"; conversationId: string; header: string }
  | { kind: "stateless"; reason: "no_id" | "temporary" | "task" };

/** What {@linkcode identifyChat} reads of a request body. */
export interface ChatShape {
  stream: boolean;
  messages: readonly { role: string; content: unknown }[];
}

/**
 * Decides how a completion request is kept: in the conversation its headers
 * name, or stateless (no id, a temporary chat or channel, or a task).
 */
export function identifyChat(
  header: (name: string) => string | undefined,
  body: ChatShape,
): ChatIdentity {
  if (isTask(header, body)) return { kind: "stateless", reason: "task" };
  for (const name of CONVERSATION_HEADERS) {
    const value = present(header(name));
    if (value === undefined) continue;
    if (STATELESS_PREFIXES.some((p) => value === p || (p.endsWith(":") && value.startsWith(p)))) {
      return { kind: "stateless", reason: "temporary" };
    }
    return { kind: "conversation", conversationId: value, header: name };
  }
  return { kind: "stateless", reason: "no_id" };
}

/**
 * A task says so in the task header when the connection sets one; without it,
 * a task is known by its shape: not streamed, one user message that begins
 * with `### Task:` or carries the chat inside `<chat_history>`, after any
 * system messages (a workspace model's system prompt goes to its tasks too).
 */
function isTask(header: (name: string) => string | undefined, body: ChatShape): boolean {
  if (present(header(TASK_HEADER)) !== undefined) return true;
  if (body.stream) return false;
  const rest = body.messages.filter((m, i) =>
    !(m.role === "system" && body.messages.slice(0, i).every((before) => before.role === "system"))
  );
  if (rest.length !== 1 || rest[0].role !== "user") return false;
  const text = textOf(rest[0].content);
  return TASK_PROMPT.test(text) || text.includes("<chat_history>");
}

/** A header's value, or undefined when it is missing, empty, or a placeholder left unexpanded. */
function present(value: string | undefined): string | undefined {
  const trimmed = value?.trim();
  return trimmed && !trimmed.includes("{{") ? trimmed : undefined;
}

function textOf(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content.map((part) => typeof part?.text === "string" ? part.text : "").join("\n");
}
