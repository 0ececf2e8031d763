/** The body of `POST /chat`, checked against a schema. */
import * as z from "zod/mini";
import { invalidRequest } from "./errors.ts";
import {
  callbackUrlProblem,
  cappedArray,
  conversationIdSchema,
  imageUrlSchema,
  MAX_IMAGES,
  MAX_TEXT_CHARS,
  MAX_URL_CHARS,
} from "./request_fields.ts";
import { zodProblems } from "./validation.ts";
import type { Priority } from "../core/jobs.ts";

const chatRequestSchema = z.object({
  conversation_id: conversationIdSchema,
  user_message: z.string({ error: "must be a string" }).check(
    z.maxLength(MAX_TEXT_CHARS, `must be at most ${MAX_TEXT_CHARS} characters`),
    z.refine((s: string) => s.trim().length > 0, "must not be empty"),
  ),
  images: z.optional(cappedArray(
    z.object({ image_url: imageUrlSchema }, {
      error: "must be an object with an image_url string",
    }),
    { max: MAX_IMAGES, items: "images", notArray: "must be an array of { image_url } objects" },
  )),
  priority: z.optional(z.enum(["high", "normal"], { error: 'must be "high" or "normal"' })),
  model: z.optional(
    z.string({ error: "must be a string" }).check(
      z.trim(),
      z.minLength(1, "must not be empty"),
      z.maxLength(256, "must be at most 256 characters"),
    ),
  ),
  callback_url: z.optional(
    z.url({ protocol: /^https?$/, error: "must be an http(s) URL" })
      .check(z.maxLength(MAX_URL_CHARS, `must be at most ${MAX_URL_CHARS} characters`)),
  ),
}, { error: "must be a JSON object" });

/** What {@linkcode parseChatRequest} checks a request against besides its schema. */
export interface ChatRequestOptions {
  /** `CALLBACK_ALLOWED_HOSTS`: hosts a `callback_url` may name on a private address. */
  callbackAllowedHosts: readonly string[];
}

/** A valid chat request. */
export interface ChatRequest {
  conversationId: string;
  userMessage: string;
  imageUrls: string[];
  priority: Priority;
  /** The model to answer; without one the message is routed by content. */
  model?: string;
  /** Where the finished job is POSTed. */
  callbackUrl?: string;
}

/** Parses a JSON value as a chat request, or throws a 400 listing every problem. */
export function parseChatRequest(body: unknown, options: ChatRequestOptions): ChatRequest {
  // An OpenAI client pointed at the job API: say where its request belongs, before what it lacks.
  if (isObject(body) && "messages" in body && !("user_message" in body)) {
    throw invalidRequest([{
      param: "messages",
      message:
        "is OpenAI's chat shape, which POST /v1/chat/completions takes; POST /chat takes conversation_id and user_message",
    }]);
  }
  const result = chatRequestSchema.safeParse(body, { reportInput: true });
  const problems = result.success ? [] : zodProblems(result.error.issues);
  // A callback URL that plainly points inside the network is refused now, not when the job ends.
  const callbackUrl = (body as { callback_url?: unknown } | null)?.callback_url;
  if (typeof callbackUrl === "string" && !problems.some((p) => p.param === "callback_url")) {
    const problem = callbackUrlProblem(callbackUrl, options.callbackAllowedHosts);
    if (problem) problems.push({ param: "callback_url", message: problem });
  }
  if (!result.success || problems.length > 0) throw invalidRequest(problems);
  const { conversation_id, user_message, images, priority, model, callback_url } = result.data;
  return {
    conversationId: conversation_id,
    userMessage: user_message,
    imageUrls: (images ?? []).map((i) => i.image_url),
    priority: priority ?? "normal",
    model,
    callbackUrl: callback_url,
  };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
