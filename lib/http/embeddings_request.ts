/**
 * The body of `POST /v1/embeddings`, in OpenAI's shape: `input` (a string,
 * an array of strings, an array of token ids, or an array of token arrays),
 * `model`, `encoding_format` ("float" or "base64", answered by the gateway),
 * `dimensions` (passed to the backend) and `user` (accepted and ignored, as a
 * self-hosted model tracks no abuse). Other fields go to the backend as they
 * are (vLLM takes `truncate_prompt_tokens` and the like), except to Ollama,
 * whose OpenAI layer would drop them unread: they are named in a 400.
 *
 * Bounds: at most 2048 inputs (OpenAI's), at most 300,000 token ids in all
 * (OpenAI's 300,000 tokens a request), and at most 1,200,000 bytes of text in
 * all (those tokens at about four bytes each). A request is one job and one
 * backend call, so these bound what one call asks of a backend, how long the
 * worker waits for it, and the vectors it keeps (2048 × 1024 floats are 8 MB).
 */
import * as z from "zod/mini";
import type { CompletionParams } from "../core/jobs.ts";
import { inputCount } from "../core/embeddings.ts";
import { type FieldProblem, invalidRequest } from "./errors.ts";
import { MAX_SHORT_CHARS } from "./request_fields.ts";
import { zodProblems } from "./validation.ts";

/** Most inputs in one request, as OpenAI allows. */
export const MAX_EMBEDDING_INPUTS = 2048;
/** Most token ids in all the inputs of one request: OpenAI's 300,000 tokens. */
export const MAX_EMBEDDING_TOKENS = 300_000;
/** Most UTF-8 bytes of text in all the inputs of one request: about 300,000 tokens. */
export const MAX_EMBEDDING_TEXT_BYTES = 1_200_000;
/** The largest token id taken (a 32-bit signed integer, as tokenizers use). */
const MAX_TOKEN_ID = 2_147_483_647;
/** The longest vector a client may ask for with `dimensions`. */
const MAX_DIMENSIONS = 65_536;

/** Fields the gateway handles itself; the rest of the body goes to the backend. */
const HANDLED = new Set(["model", "input", "encoding_format", "dimensions", "user"]);

const shortString = z.string({ error: "must be a string" })
  .check(z.maxLength(MAX_SHORT_CHARS, `must be at most ${MAX_SHORT_CHARS} characters`));

const embeddingsRequestSchema = z.looseObject({
  model: shortString.check(z.minLength(1, "must not be empty")),
  input: z.unknown(),
  encoding_format: z.nullish(
    z.enum(["float", "base64"], { error: 'must be "float" or "base64"' }),
  ),
  dimensions: z.nullish(
    z.int({ error: "must be an integer", abort: true }).check(
      z.gte(1, "must be at least 1"),
      z.lte(MAX_DIMENSIONS, `must be at most ${MAX_DIMENSIONS}`),
    ),
  ),
  user: z.nullish(shortString),
}, { error: "must be a JSON object" });

/** A valid `POST /v1/embeddings` body. */
export interface EmbeddingsRequest {
  model: string;
  /** How many vectors it asks for: one per input. */
  count: number;
  /** The input is token ids, not text. */
  tokens: boolean;
  encodingFormat: "float" | "base64";
  /** What the backend is sent besides `model`: `input`, `dimensions` and any other field. */
  params: CompletionParams;
}

/** Parses an OpenAI embeddings request body, or throws a 400 listing every problem. */
export function parseEmbeddingsRequest(body: unknown): EmbeddingsRequest {
  const result = embeddingsRequestSchema.safeParse(body, { reportInput: true });
  const problems = result.success ? [] : zodProblems(result.error.issues);
  const isObject = typeof body === "object" && body !== null && !Array.isArray(body);
  if (isObject) problems.push(...inputProblems((body as { input?: unknown }).input));
  if (!result.success || problems.length > 0) throw invalidRequest(problems);

  const data = result.data;
  const params: Record<string, unknown> = { input: data.input };
  for (const [key, value] of Object.entries(data)) {
    if (!HANDLED.has(key) && value !== null && value !== undefined) params[key] = value;
  }
  if (data.dimensions != null) params.dimensions = data.dimensions;
  return {
    model: data.model,
    count: inputCount(data.input),
    tokens: isTokens(data.input),
    encodingFormat: data.encoding_format ?? "float",
    params,
  };
}

/**
 * Fields a backend of this kind would refuse or drop unread, named in a 400
 * before the job is queued. Ollama embeds text only (its OpenAI layer answers
 * token ids with "invalid input type"), and reads no field but `input`,
 * `model`, `dimensions` and `encoding_format`.
 */
export function embeddingBackendProblems(
  kind: string,
  backendName: string,
  request: EmbeddingsRequest,
): FieldProblem[] {
  if (kind !== "ollama") return [];
  const problems: FieldProblem[] = [];
  const refuse = (param: string, why: string) =>
    problems.push({ param, message: `${why} (backend "${backendName}" is ${kind})` });
  if (request.tokens) refuse("input", "must be text: Ollama does not embed token ids");
  for (const key of Object.keys(request.params)) {
    if (key !== "input" && key !== "dimensions") refuse(key, "is not supported by Ollama");
  }
  return problems;
}

function isTokens(input: unknown): boolean {
  return Array.isArray(input) && input.length > 0 && typeof input[0] !== "string";
}

/** What is wrong with `input`, each problem at the item it concerns. */
function inputProblems(input: unknown): FieldProblem[] {
  if (input === undefined || input === null) return [{ param: "input", message: "is required" }];
  if (typeof input === "string") return textProblems([input], "input");
  const shape = "must be a string, an array of strings, an array of token ids (integers) " +
    "or an array of token arrays";
  if (!Array.isArray(input)) return [{ param: "input", message: shape }];
  if (input.length === 0) return [{ param: "input", message: "must hold at least one input" }];
  if (typeof input[0] === "number") return tokenProblems([input], "input");
  if (input.length > MAX_EMBEDDING_INPUTS) {
    return [{
      param: "input",
      message: `must hold at most ${MAX_EMBEDDING_INPUTS} inputs, got ${input.length}`,
    }];
  }
  const strings = typeof input[0] === "string";
  const kind = strings ? "a string, like input[0]" : "an array of token ids, like input[0]";
  const mixed = input.findIndex((item) =>
    strings ? typeof item !== "string" : !Array.isArray(item)
  );
  if (mixed >= 0) return [{ param: `input[${mixed}]`, message: `must be ${kind}` }];
  return strings
    ? textProblems(input as string[], "input", true)
    : tokenProblems(input as unknown[][], "input", true);
}

function textProblems(texts: readonly string[], param: string, indexed = false): FieldProblem[] {
  const problems: FieldProblem[] = [];
  let bytes = 0;
  const encoder = new TextEncoder();
  texts.forEach((text, i) => {
    if (text.length === 0) {
      problems.push({ param: indexed ? `${param}[${i}]` : param, message: "must not be empty" });
    }
    bytes += encoder.encode(text).length;
  });
  if (bytes > MAX_EMBEDDING_TEXT_BYTES) {
    problems.push({
      param,
      message:
        `must hold at most ${MAX_EMBEDDING_TEXT_BYTES} bytes of text in all, got ${bytes}: send it in several requests`,
    });
  }
  return problems;
}

function tokenProblems(
  arrays: readonly unknown[][],
  param: string,
  indexed = false,
): FieldProblem[] {
  const problems: FieldProblem[] = [];
  let tokens = 0;
  arrays.forEach((ids, i) => {
    const at = indexed ? `${param}[${i}]` : param;
    if (ids.length === 0) problems.push({ param: at, message: "must hold at least one token id" });
    const bad = ids.findIndex((id) =>
      typeof id !== "number" || !Number.isInteger(id) || id < 0 || id > MAX_TOKEN_ID
    );
    if (bad >= 0) {
      problems.push({
        param: `${at}[${bad}]`,
        message: `must be a token id: an integer from 0 to ${MAX_TOKEN_ID}`,
      });
    }
    tokens += ids.length;
  });
  if (tokens > MAX_EMBEDDING_TOKENS) {
    problems.push({
      param,
      message:
        `must hold at most ${MAX_EMBEDDING_TOKENS} token ids in all, got ${tokens}: send them in several requests`,
    });
  }
  return problems;
}
