/**
 * `POST /v1/embeddings`, OpenAI's shape: for Open WebUI's documents (RAG),
 * LangChain's `OpenAIEmbeddings` and the `openai` SDKs. A request is one
 * stateless job, through the same queue and worker as a chat: the worker asks
 * the backend's own `/v1/embeddings` (vLLM and Ollama both serve it) and
 * stores the vectors; this route waits for them and answers.
 */
import type { Handler } from "hono";
import type { BlobStore } from "../core/blobs.ts";
import { fromBase64 } from "../core/embeddings.ts";
import type { Job } from "../core/jobs.ts";
import { embeddingList } from "./embeddings_objects.ts";
import {
  embeddingBackendProblems,
  type EmbeddingsRequest,
  parseEmbeddingsRequest,
} from "./embeddings_request.ts";
import { ApiError, invalidRequest } from "./errors.ts";
import type { GatewayEnv } from "./http_context.ts";
import { IDEMPOTENCY_HEADER, idempotencyClaim, REPLAYED_HEADER } from "./idempotency.ts";
import { replyWait, waitForJobEnd } from "./job_wait.ts";
import type { Target } from "./model_directory.ts";
import type { RouteDeps } from "./route_deps.ts";
import { type JobSpec, submitJob } from "./submit.ts";
import { readJson } from "./validation.ts";

/** `POST /v1/embeddings`: queues the request as a job and answers with its vectors, in input order. */
export function createEmbeddings({ services, logger }: RouteDeps): Handler<GatewayEnv> {
  const { config, store } = services;
  return async function handleCreateEmbeddings(c) {
    const body = await readJson(c.req.raw);
    const request = parseEmbeddingsRequest(body);
    const owner = c.get("owner");
    const idempotency = await idempotencyClaim({
      key: c.req.header(IDEMPOTENCY_HEADER),
      owner,
      route: c.req.path,
      body,
    });
    const { accepted, replayed } = await submitJob(services, {
      ...jobSpec(request, owner),
      idempotency,
    });
    if (replayed) c.header(REPLAYED_HEADER, "true");
    logger.info(replayed ? "Embeddings repeated" : "Embeddings accepted", {
      request_id: c.get("requestId"),
      job_id: accepted.job_id,
      route: accepted.route,
      inputs: request.count,
    });
    const { wait, finished } = replyWait(accepted.job_id, {
      timeoutMs: config.syncTimeoutMs,
      env: c.env,
      signal: c.req.raw.signal,
    });
    const job = finished(await waitForJobEnd(store, accepted.job_id, wait));
    return c.json(embeddingList(await vectorBytes(job, services.blobs), job.embeddings!, {
      model: request.model,
      encodingFormat: request.encodingFormat,
      usage: job.usage,
    }));
  };
}

/**
 * The job for an embeddings request: stateless (no conversation is read or
 * written), its input and backend fields in `params`, which the front door
 * keeps in the blob store when long. The job's own message is empty: an
 * embedding has no turn of a chat.
 */
function jobSpec(request: EmbeddingsRequest, owner: string | undefined): JobSpec {
  return {
    conversationId: `embeddings/${crypto.randomUUID()}`,
    owner,
    userMessage: { role: "user", content: "" },
    priority: "normal",
    model: request.model,
    recordFields: { mode: "stateless", api: "embeddings", params: request.params },
    checkTarget: (target: Target) => {
      const problems = embeddingBackendProblems(
        target.backend.kind,
        target.backend.name,
        request,
      );
      if (problems.length > 0) throw invalidRequest(problems);
    },
  };
}

/** A succeeded embeddings job's vectors, from its record or the blob store. */
async function vectorBytes(job: Job, blobs: BlobStore): Promise<Uint8Array> {
  const stored = job.embeddings;
  if (stored?.data !== undefined) return fromBase64(stored.data);
  const blob = stored?.ref ? await blobs.get(stored.ref) : undefined;
  if (!blob) {
    // Kept a day, as a stateless request's blobs are: a repeat long after has nothing to read.
    throw new ApiError(
      410,
      `The vectors of job ${job.job_id} are no longer kept (a day after they were made); send the request again with a new Idempotency-Key`,
      { code: "result_expired", jobId: job.job_id },
    );
  }
  return blob.bytes;
}
