/**
 * The vectors of an embeddings job, as the worker stores them and the front
 * door reads them back: little-endian float32, one vector after another in
 * input order, which is exactly what OpenAI's `encoding_format: "base64"`
 * carries. Backends compute float32 vectors (Ollama sends float32 values,
 * vLLM the float32 values of its tensors), so nothing is lost. A few vectors
 * stay in the job record; more go to the blob store, so a record stays within
 * a DynamoDB item (400 KB) and a Deno KV value (64 KiB): 100 vectors of 1024
 * floats take 400 KB.
 */
import { Buffer } from "node:buffer";

/** What a succeeded embeddings job keeps of its vectors. */
export interface StoredEmbeddings {
  /** How many vectors: one per input. */
  count: number;
  /** The length of each vector. */
  dimensions: number;
  /** The vectors as base64, when small enough for the record. */
  data?: string;
  /** Otherwise the blob that holds their bytes. */
  ref?: string;
}

/**
 * The most bytes of vectors kept in a job record (10.9 KB as base64): one
 * vector of up to 2048 floats, or a few short ones.
 */
export const EMBEDDINGS_INLINE_BYTES = 8192;

/** The blob type of stored vectors. */
export const VECTORS_CONTENT_TYPE = "application/octet-stream";

/** Vectors of one length as little-endian float32 bytes, in order. */
export function vectorsToBytes(
  vectors: readonly ArrayLike<number>[],
  dimensions: number,
): Uint8Array {
  const bytes = new Uint8Array(vectors.length * dimensions * 4);
  const view = new DataView(bytes.buffer);
  vectors.forEach((vector, i) => {
    for (let j = 0; j < dimensions; j++) view.setFloat32((i * dimensions + j) * 4, vector[j], true);
  });
  return bytes;
}

/** Splits little-endian float32 bytes into `count` vectors of `dimensions` floats. */
export function bytesToVectors(
  bytes: Uint8Array,
  count: number,
  dimensions: number,
): Float32Array[] {
  if (bytes.length !== count * dimensions * 4) {
    throw new RangeError(
      `Cannot read vectors: ${bytes.length} bytes are not ${count} vectors of ${dimensions} floats`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Array.from({ length: count }, (_, i) => {
    const vector = new Float32Array(dimensions);
    for (let j = 0; j < dimensions; j++) {
      vector[j] = view.getFloat32((i * dimensions + j) * 4, true);
    }
    return vector;
  });
}

/** Bytes as base64. */
export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

/** Base64 as bytes. */
export function fromBase64(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, "base64"));
}

/**
 * How many vectors an `input` asks for: one for a string or a single token
 * array, one per item for an array of strings or of token arrays.
 */
export function inputCount(input: unknown): number {
  if (!Array.isArray(input)) return 1;
  return input.length > 0 && typeof input[0] === "number" ? 1 : input.length;
}
