/** The body of `POST /chat`, checked against a schema. */
import { z } from "./schema.ts";
import { invalidRequest } from "./errors.ts";
import { zodProblems } from "./validation.ts";
import type { Priority } from "../core/jobs.ts";

/** Images one message may carry: each is fetched and inlined for the backend. */
export const MAX_IMAGES = 8;

const chatRequestSchema = z.object({
  conversation_id: z.string({ error: "must be a string" })
    .trim()
    .min(1, "must not be empty")
    .max(256, "must be at most 256 characters"),
  user_message: z.string({ error: "must be a string" })
    .refine((s) => s.trim().length > 0, "must not be empty"),
  images: z.array(
    z.object({ image_url: z.string({ error: "must be a string" }).min(1, "must not be empty") }, {
      error: "must be an object with an image_url string",
    }),
    { error: "must be an array of { image_url } objects" },
  ).max(MAX_IMAGES, `must hold at most ${MAX_IMAGES} images`).optional(),
  priority: z.enum(["high", "normal"], { error: 'must be "high" or "normal"' }).optional(),
  callback_url: z.url({ protocol: /^https?$/, error: "must be an http(s) URL" }).max(2048)
    .optional(),
}, { error: "must be a JSON object" });

/** A valid chat request. */
export interface ChatRequest {
  conversationId: string;
  userMessage: string;
  imageUrls: string[];
  priority: Priority;
  /** Where the finished job is POSTed. */
  callbackUrl?: string;
}

/** Parses a JSON value as a chat request, or throws a 400 listing every problem. */
export function parseChatRequest(body: unknown): ChatRequest {
  const result = chatRequestSchema.safeParse(body, { reportInput: true });
  if (!result.success) {
    throw invalidRequest(zodProblems(result.error.issues));
  }
  const { conversation_id, user_message, images, priority, callback_url } = result.data;
  return {
    conversationId: conversation_id,
    userMessage: user_message,
    imageUrls: (images ?? []).map((i) => i.image_url),
    priority: priority ?? "normal",
    callbackUrl: callback_url,
  };
}
