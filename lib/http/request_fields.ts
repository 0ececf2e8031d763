/**
 * Limits on what one request may hold, and the schemas that enforce them,
 * shared by `POST /chat` and `POST /v1/chat/completions`. A body is at most
 * `MAX_BODY_BYTES`; these bound the work and the answer a body can cause
 * within that (thousands of empty messages, one problem each, once made a
 * 1 MB body answer with a 99 MB error).
 */
import * as z from "zod/mini";
import { errorMessage } from "../core/error_message.ts";
import { shorten } from "../core/text.ts";
import {
  checkUrlLiterally,
  isAllowedHost,
  isLoopbackName,
  OutboundRefusal,
  parseHttpUrl,
} from "../outbound/url_rules.ts";
import { problemCheck } from "./validation.ts";

/** Longest conversation id, in characters. */
export const MAX_ID_CHARS = 256;
/**
 * Most messages in one `/v1/chat/completions` request. Open WebUI sends the
 * whole chat each time, so this leaves room for long chats.
 */
export const MAX_MESSAGES = 5000;
/** Most content parts in one message. */
export const MAX_CONTENT_PARTS = 64;
/** Most images in the message answered: each is fetched and inlined for the backend. */
export const MAX_IMAGES = 8;
/** Most images in one request, history included. */
export const MAX_REQUEST_IMAGES = 32;
/** Longest http(s) URL of an image or a callback; data: URLs are bounded by the body's size. */
export const MAX_URL_CHARS = 2048;
/** Longest text of one message or content part, in characters. */
export const MAX_TEXT_CHARS = 1_000_000;
/** Longest model name, message name, image detail or stop sequence. */
export const MAX_SHORT_CHARS = 256;

/**
 * Why a string cannot be an id, or undefined when it can: too long, control
 * characters, or a lone surrogate (which no store keeps as it was sent).
 */
export function idProblem(value: string, maxChars = MAX_ID_CHARS): string | undefined {
  if (value.length === 0) return "must not be empty";
  if (value.length > maxChars) return `must be at most ${maxChars} characters`;
  if (/\p{Cc}/u.test(value)) return "must not hold control characters";
  if (!value.isWellFormed()) return "must be valid Unicode text (it holds a lone surrogate)";
  return undefined;
}

/** A conversation id: trimmed, 1 to 256 characters, printable, valid Unicode. */
export const conversationIdSchema = z.string({ error: "must be a string" })
  .check(z.trim(), problemCheck((id: string) => idProblem(id)));

/** The limits and the problems of a {@linkcode cappedArray}. */
export interface ArrayLimits {
  max: number;
  /** Named in the problems, plural: "messages". */
  items: string;
  /** Said of an array with fewer items; none is too few when absent. */
  tooFew?: { min: number; problem: string };
  /** Said of a value that is not an array; default "must be an array of <items>". */
  notArray?: string;
}

/**
 * An array of at most `max` items. Its length is checked first and the pipe
 * stops there when it fails, so an array of a million bad items costs one
 * problem, not a million. (zod's own length checks would also measure a
 * string sent instead, and report its length as a count of items.)
 */
export function cappedArray<T extends z.core.SomeType>(item: T, limits: ArrayLimits) {
  return z.pipe(
    z.unknown().check(problemCheck((value) => arrayProblem(value, limits))),
    z.array(item),
  );
}

function arrayProblem(value: unknown, limits: ArrayLimits): string | undefined {
  if (value === undefined) return "is required";
  if (!Array.isArray(value)) return limits.notArray ?? `must be an array of ${limits.items}`;
  if (value.length > limits.max) {
    return `must hold at most ${limits.max} ${limits.items}, got ${value.length}`;
  }
  if (limits.tooFew && value.length < limits.tooFew.min) return limits.tooFew.problem;
  return undefined;
}

/** A data: URL's header, up to its payload: its media type, and whether it says base64. */
const DATA_URL_HEAD = /^\s*data:([^,;]*)[^,]*?(;base64)?,/i;
/** Characters of a media type a refusal repeats. */
const SHOWN_TYPE_CHARS = 60;

/** Why a data: URL cannot be an image, or undefined: only base64 images that decode. */
function dataUrlProblem(url: string): string | undefined {
  const head = DATA_URL_HEAD.exec(url);
  if (!head) return "must be a data: URL with a comma before its payload";
  // Without a type, a data: URL is text/plain (RFC 2397).
  const type = head[1].trim().toLowerCase() || "text/plain";
  if (!type.startsWith("image/")) {
    return `a data: URL must hold an image (data:image/png;base64,...), got ${
      shorten(type, SHOWN_TYPE_CHARS)
    }`;
  }
  if (!head[2]) return "a data: URL must be base64 (data:image/png;base64,...)";
  const payload = url.slice(head[0].length).replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(payload) || payload.length % 4 === 1) {
    return "its base64 payload does not decode (standard base64, not base64url)";
  }
  return undefined;
}

/**
 * An image URL: http or https without credentials, or a base64 data: URL
 * (the front door checks its size, the worker its type). Other schemes and
 * other data: URLs are refused here at once, not when the job runs.
 */
export const imageUrlSchema = z.string({ error: "must be a string" })
  .check(z.minLength(1, "must not be empty"), problemCheck(imageUrlProblem));

function imageUrlProblem(url: string): string | undefined {
  if (/^\s*data:/i.test(url)) return dataUrlProblem(url);
  if (url.length > MAX_URL_CHARS) return `must be at most ${MAX_URL_CHARS} characters`;
  return refusal(() => parseHttpUrl(url, "use http, https or data:"));
}

/**
 * Why the front door refuses a callback URL, or undefined: another scheme,
 * credentials, or an address that is plainly not public (an IP literal or a
 * `localhost` name) and not in `allowedHosts`. Names are resolved only by the
 * worker, before each attempt.
 */
export function callbackUrlProblem(
  url: string,
  allowedHosts: readonly string[],
): string | undefined {
  return refusal(() => {
    const target = checkUrlLiterally(url, { allowedHosts });
    if (isLoopbackName(target.hostname) && !isAllowedHost(target, allowedHosts)) {
      throw new OutboundRefusal(`${target.hostname} is not a public address (loopback)`);
    }
  });
}

function refusal(check: () => unknown): string | undefined {
  try {
    check();
    return undefined;
  } catch (err) {
    return errorMessage(err);
  }
}
