/** OpenAI's embeddings response object, as the gateway sends it, from the vectors a job stored. */
import { bytesToVectors, type StoredEmbeddings, toBase64 } from "../core/embeddings.ts";
import type { Usage } from "../core/messages.ts";

/** One vector of the answer: numbers, or little-endian float32 as base64. */
export interface EmbeddingObject {
  object: "embedding";
  index: number;
  embedding: number[] | string;
}

/** OpenAI's answer to `POST /v1/embeddings`. */
export interface EmbeddingList {
  object: "list";
  data: EmbeddingObject[];
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}

/** Options for {@linkcode embeddingList}. */
export interface EmbeddingListOptions {
  /** The model as the client named it. */
  model: string;
  encodingFormat: "float" | "base64";
  usage?: Usage;
}

/**
 * Builds the answer from a job's vectors (`bytes`: little-endian float32,
 * one vector after another), in input order. As "float", each number is
 * given to 9 significant digits, which is exactly the float32 the backend
 * computed and about half the characters of its full double form.
 */
export function embeddingList(
  bytes: Uint8Array,
  stored: Pick<StoredEmbeddings, "count" | "dimensions">,
  options: EmbeddingListOptions,
): EmbeddingList {
  const { count, dimensions } = stored;
  const data: EmbeddingObject[] = options.encodingFormat === "base64"
    ? Array.from({ length: count }, (_, index) => ({
      object: "embedding",
      index,
      embedding: toBase64(bytes.subarray(index * dimensions * 4, (index + 1) * dimensions * 4)),
    }))
    : bytesToVectors(bytes, count, dimensions).map((vector, index) => ({
      object: "embedding",
      index,
      embedding: Array.from(vector, (x) => Number(x.toPrecision(9))),
    }));
  const prompt = options.usage?.prompt_tokens ?? 0;
  return {
    object: "list",
    data,
    model: options.model,
    usage: { prompt_tokens: prompt, total_tokens: options.usage?.total_tokens ?? prompt },
  };
}
