/**
 * The part of `@anthropic-ai/sdk`'s API the tests use. Its own types import
 * Node's modules, which brings `@types/node` into the whole type check and
 * changes `node:assert`'s signatures for every test file; so
 * tests/anthropic_messages_test.ts imports the SDK with these instead, as
 * tests/support/browser.ts does puppeteer-core. The names and shapes are the
 * SDK's (src/resources/messages/messages.ts, src/core/error.ts).
 */

/** The broad category of an error: `error.type` of Anthropic's error body. */
export type ErrorType =
  | "invalid_request_error"
  | "authentication_error"
  | "billing_error"
  | "permission_error"
  | "not_found_error"
  | "rate_limit_error"
  | "timeout_error"
  | "api_error"
  | "overloaded_error"
  | "conflict_error";

export class AnthropicError extends Error {}

export class APIError extends AnthropicError {
  readonly status: number | undefined;
  readonly headers: Headers | undefined;
  /** The JSON body of the response. */
  readonly error: unknown;
  readonly type: ErrorType | null;
  /** `error.message` of the body. */
  readonly apiMessage: string | null;
  readonly requestID: string | null | undefined;
}

export class BadRequestError extends APIError {}
export class AuthenticationError extends APIError {}
export class NotFoundError extends APIError {}

export interface CacheControlEphemeral {
  type: "ephemeral";
}

export interface TextBlockParam {
  type: "text";
  text: string;
  cache_control?: CacheControlEphemeral | null;
}

export interface ImageBlockParam {
  type: "image";
  source:
    | {
      type: "base64";
      media_type: "image/jpeg" | "image/png" | "image/gif" | "image/webp";
      data: string;
    }
    | { type: "url"; url: string };
}

export interface ToolUseBlockParam {
  type: "tool_use";
  id: string;
  name: string;
  input: unknown;
}

export interface ToolResultBlockParam {
  type: "tool_result";
  tool_use_id: string;
  content?: string | (TextBlockParam | ImageBlockParam)[];
  is_error?: boolean;
}

export interface ThinkingBlockParam {
  type: "thinking";
  thinking: string;
  signature: string;
}

export type ContentBlockParam =
  | TextBlockParam
  | ImageBlockParam
  | ToolUseBlockParam
  | ToolResultBlockParam
  | ThinkingBlockParam;

export interface MessageParam {
  role: "user" | "assistant";
  content: string | (ContentBlockParam | ContentBlock)[];
}

export interface Tool {
  name: string;
  description?: string;
  input_schema: { type: "object"; properties?: unknown; required?: string[] | null };
}

export type ToolChoice =
  | { type: "auto"; disable_parallel_tool_use?: boolean }
  | { type: "any"; disable_parallel_tool_use?: boolean }
  | { type: "tool"; name: string; disable_parallel_tool_use?: boolean }
  | { type: "none" };

export type ThinkingConfigParam =
  | { type: "enabled"; budget_tokens: number; display?: "summarized" | "omitted" | null }
  | { type: "adaptive"; display?: "summarized" | "omitted" | null }
  | { type: "disabled" };

export interface MessageCreateParamsBase {
  model: string;
  max_tokens: number;
  messages: MessageParam[];
  system?: string | TextBlockParam[];
  metadata?: { user_id?: string | null };
  stop_sequences?: string[];
  tools?: Tool[];
  tool_choice?: ToolChoice;
  thinking?: ThinkingConfigParam;
}

export interface MessageCreateParamsNonStreaming extends MessageCreateParamsBase {
  stream?: false;
}

export interface MessageCountTokensParams {
  model: string;
  messages: MessageParam[];
  system?: string | TextBlockParam[];
  tools?: Tool[];
}

export interface TextBlock {
  type: "text";
  text: string;
}

export interface ThinkingBlock {
  type: "thinking";
  thinking: string;
  signature: string;
}

export interface ToolUseBlock {
  type: "tool_use";
  id: string;
  name: string;
  input: unknown;
}

export type ContentBlock = TextBlock | ThinkingBlock | ToolUseBlock;

export interface Usage {
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number | null;
  cache_read_input_tokens: number | null;
}

export interface Message {
  id: string;
  type: "message";
  role: "assistant";
  model: string;
  content: ContentBlock[];
  stop_reason: string | null;
  stop_sequence: string | null;
  usage: Usage;
}

/** One raw event of a stream, as far as the tests read it. */
export type MessageStreamEvent =
  | { type: "message_start"; message: Message }
  | {
    type: "content_block_delta";
    index: number;
    delta:
      | { type: "text_delta"; text: string }
      | { type: "thinking_delta"; thinking: string }
      | { type: "input_json_delta"; partial_json: string };
  }
  | { type: "content_block_start" | "content_block_stop"; index: number }
  | { type: "message_delta" | "message_stop" };

export interface MessageStream {
  on(event: "streamEvent", listener: (event: MessageStreamEvent) => void): this;
  on(event: "text", listener: (delta: string) => void): this;
  finalMessage(): Promise<Message>;
}

export interface ClientOptions {
  baseURL?: string;
  apiKey?: string | null;
  authToken?: string | null;
  maxRetries?: number;
  timeout?: number;
  defaultHeaders?: Record<string, string>;
}

declare class Anthropic {
  constructor(options?: ClientOptions);
  messages: {
    create(params: MessageCreateParamsNonStreaming): Promise<Message>;
    stream(params: MessageCreateParamsBase): MessageStream;
    countTokens(params: MessageCountTokensParams): Promise<{ input_tokens: number }>;
  };
  static APIError: typeof APIError;
  static BadRequestError: typeof BadRequestError;
  static AuthenticationError: typeof AuthenticationError;
  static NotFoundError: typeof NotFoundError;
}

declare namespace Anthropic {
  export type {
    ContentBlock,
    Message,
    MessageCreateParamsNonStreaming,
    MessageParam,
    MessageStreamEvent,
    Tool,
  };
}

export default Anthropic;
