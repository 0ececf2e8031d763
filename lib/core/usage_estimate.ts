/**
 * Token counts for a reply whose backend gave none. A model's own tokenizer
 * is not at hand, so this counts as OpenAI's rule of thumb does: about four
 * characters of English a token, and a flat amount for each image. The
 * README says the counts are estimates when they come from here. The front
 * door uses the same count to answer `POST /v1/messages/count_tokens`.
 */
import { type ChatMessage, messageText, type Usage } from "./messages.ts";

/** Characters of text a token stands for, roughly. */
const CHARS_PER_TOKEN = 4;
/** Tokens counted for one image (a low-detail image in OpenAI's pricing). */
const TOKENS_PER_IMAGE = 85;
/** Tokens a chat template adds around each message. */
const TOKENS_PER_MESSAGE = 4;

/** Estimated token counts of a prompt and its reply. */
export function estimateUsage(prompt: readonly ChatMessage[], reply: ChatMessage): Usage {
  const prompt_tokens = prompt.reduce((sum, m) => sum + messageTokens(m), 0);
  const completion_tokens = tokens(replyChars(reply));
  return { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens };
}

/** Estimated tokens of a prompt: its messages, and the tool definitions sent with them, as JSON text. */
export function estimatePromptTokens(prompt: readonly ChatMessage[], tools?: unknown): number {
  const toolTokens = tools === undefined ? 0 : tokens(JSON.stringify(tools).length);
  return prompt.reduce((sum, m) => sum + messageTokens(m), 0) + toolTokens;
}

function messageTokens(message: ChatMessage): number {
  const images = Array.isArray(message.content)
    ? message.content.filter((p) => p.type === "image_url").length
    : 0;
  return TOKENS_PER_MESSAGE + tokens(replyChars(message)) + images * TOKENS_PER_IMAGE;
}

function replyChars(message: ChatMessage): number {
  const calls = (message.tool_calls ?? []).reduce(
    (sum, c) => sum + c.function.name.length + c.function.arguments.length,
    0,
  );
  return messageText(message).length + (message.reasoning_content?.length ?? 0) + calls;
}

function tokens(chars: number): number {
  return Math.ceil(chars / CHARS_PER_TOKEN);
}
