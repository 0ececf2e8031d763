/**
 * Runs an embeddings job (`POST /v1/embeddings`): one backend call for the
 * job's whole input, as its request sent it. Jobs are not grouped into
 * shared calls: a job is a request, its vectors come back in its own order,
 * and one job's failure (an input too long for the model, say) is never
 * another's; the backends batch the inputs of one call themselves.
 */
import { backendNamed } from "../core/backends.ts";
import { BlobQuotaError } from "../core/blobs.ts";
import {
  EMBEDDINGS_INLINE_BYTES,
  type StoredEmbeddings,
  toBase64,
  VECTORS_CONTENT_TYPE,
  vectorsToBytes,
} from "../core/embeddings.ts";
import type { Job } from "../core/jobs.ts";
import { sleep } from "../core/sleep.ts";
import type { JobResult } from "../core/store.ts";
import { createEmbeddings } from "./embeddings_client.ts";
import { PermanentJobError, requestFields } from "./job_inputs.ts";
import type { RunJobContext } from "./job_runner.ts";

/** Characters of text a token stands for, roughly, when the backend gives no count. */
const CHARS_PER_TOKEN = 4;

/**
 * Asks the job's backend for its vectors and keeps them: in the job record
 * when they are few, else in the blob store, for a day, as a stateless
 * request's blobs are (the request that waits for them reads them at once).
 */
export async function askForEmbeddings(job: Job, context: RunJobContext): Promise<JobResult> {
  const { backends, blobs, config } = context.services;
  const backend = backendNamed(backends, job.route);
  if (!backend) {
    throw new PermanentJobError(`No backend named "${job.route}" is configured on this worker`);
  }
  const params = await requestFields(job, blobs) ?? {};
  const release = await (context.backendPlace?.(job.route) ?? Promise.resolve(() => {}));
  let reply;
  try {
    reply = await createEmbeddings(backend, {
      // As the backend lists it: Ollama's `nomic-embed-text` is its `nomic-embed-text:latest`.
      model: context.catalogue?.model(backend.name, job.model)?.id ?? job.model,
      params,
      timeoutMs: config.llmTimeoutMs,
      signal: context.signal,
    });
  } finally {
    release();
  }
  // As after a chat: the job given this place calls its model before this one's store calls.
  await sleep(0);
  const bytes = vectorsToBytes(reply.vectors, reply.dimensions);
  const stored: StoredEmbeddings = { count: reply.vectors.length, dimensions: reply.dimensions };
  if (bytes.length <= EMBEDDINGS_INLINE_BYTES) {
    stored.data = toBase64(bytes);
  } else {
    stored.ref = await blobs.put(job.owner, bytes, VECTORS_CONTENT_TYPE, { shortLived: true })
      .catch((err) => {
        if (!(err instanceof BlobQuotaError)) throw err;
        throw new PermanentJobError(
          `Cannot keep the vectors: this key's blobs take ${err.held} bytes, and their ${err.adding} more would pass BLOB_KEY_MAX_BYTES (${err.limit})`,
        );
      });
  }
  const prompt = reply.promptTokens ?? estimateTokens(params.input);
  return {
    reply: { role: "assistant", content: "" },
    finishReason: "stop",
    usage: { prompt_tokens: prompt, completion_tokens: 0, total_tokens: prompt },
    embeddings: stored,
  };
}

/** Tokens of an input by OpenAI's rule of thumb; token ids count as they are. */
function estimateTokens(input: unknown): number {
  const items = Array.isArray(input) ? input : [input];
  if (items.length > 0 && typeof items[0] === "number") return items.length;
  return items.reduce<number>(
    (sum, item) =>
      sum +
      (typeof item === "string"
        ? Math.ceil(item.length / CHARS_PER_TOKEN)
        : Array.isArray(item)
        ? item.length
        : 0),
    0,
  );
}
