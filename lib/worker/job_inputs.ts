/**
 * What a job sends its model besides its own message: the client's chat and
 * request fields, from the job's record or the blob store, and the images of
 * the chat made ready for the model, or the reason they cannot go to it.
 */
import type { BlobStore } from "../core/blobs.ts";
import { type Backend, configuredModels, findModel } from "../core/backends.ts";
import { mayTakeImages, takesImages } from "../core/catalogue.ts";
import type { CompletionParams, Job } from "../core/jobs.ts";
import { jsonDepthProblem } from "../core/json_depth.ts";
import { type ChatMessage, hasImage, withoutImages } from "../core/messages.ts";
import { hasImagesToFetch, inlineImages } from "./images.ts";
import type { RunJobContext } from "./job_runner.ts";

/** A failure that no retry can mend: the job is given up at once. */
export class PermanentJobError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PermanentJobError";
  }
}

/** The messages the client sent before the job's own, from the record or the blob store. */
export async function clientChat(job: Job, blobs: BlobStore): Promise<ChatMessage[]> {
  if (!job.context_ref) return [...(job.context ?? [])];
  const blob = await blobs.get(job.context_ref);
  if (!blob) {
    throw new PermanentJobError(
      "Cannot run the job: the chat sent with it is no longer kept (BLOB_TTL_DAYS)",
    );
  }
  return parseStored(blob.bytes, "the chat sent with the job");
}

/** The request's other fields (tools, `response_format`…), from the record or the blob store. */
export async function requestFields(
  job: Job,
  blobs: BlobStore,
): Promise<CompletionParams | undefined> {
  if (!job.params_ref) return job.params;
  const blob = await blobs.get(job.params_ref);
  if (!blob) {
    throw new PermanentJobError(
      "Cannot run the job: the fields sent with it are no longer kept (BLOB_TTL_DAYS)",
    );
  }
  return parseStored(blob.bytes, "the fields sent with the job");
}

/**
 * A stored blob's JSON, refused before it is parsed when nested too deep:
 * parsing takes time and stack in proportion to the depth, and would hold
 * up every other job of this worker.
 */
function parseStored<T>(bytes: Uint8Array, what: string): T {
  const text = new TextDecoder().decode(bytes);
  const problem = jsonDepthProblem(text);
  if (problem) throw new PermanentJobError(`Cannot read ${what}: its JSON is ${problem}`);
  return JSON.parse(text);
}

/** What {@linkcode withImages} needs. */
export interface ImageOptions {
  job: Job;
  /** The job's backend. */
  backend: Backend;
  /** What the client sent with the job, its own message included: the images the front door saw. */
  sent: readonly ChatMessage[];
  context: RunJobContext;
}

/**
 * The chat as the job's model gets it. Images go to a model that takes them,
 * or may (nobody could say: its backend decides), inlined as data: URLs,
 * which every backend takes and Ollama requires; fetching them takes the job
 * out of its backend's room. A model known not to take images fails the job
 * when the client sent it images, naming a model that does: an image is
 * never dropped unsaid. Images of a stored conversation's earlier turns
 * become short notes for such a model, as the conversation goes on in text.
 */
export async function withImages(
  messages: ChatMessage[],
  options: ImageOptions,
): Promise<ChatMessage[]> {
  const { job, backend, context } = options;
  const known = context.catalogue?.model(backend.name, job.model) ??
    findModel(backend, configuredModels(backend), job.model);
  if (known && !mayTakeImages(known)) {
    if (options.sent.some(hasImage)) {
      throw new PermanentJobError(noVisionReason(job.model, context));
    }
    return withoutImages(messages);
  }
  const { config } = context.services;
  const inline = () =>
    inlineImages(messages, {
      maxBytes: config.imageMaxBytes,
      jobMaxBytes: config.imageJobMaxBytes,
      timeoutMs: config.imageTimeoutMs,
      allowedHosts: config.imageAllowedHosts,
      cache: context.imageCache,
      owner: job.owner,
      blobs: context.services.blobs,
      fetchSlots: context.imageFetches,
      signal: context.signal,
    });
  return context.fetchingImages && hasImagesToFetch(messages)
    ? await context.fetchingImages(inline)
    : await inline();
}

/** Why a job's images cannot go to its model, and which model they could go to. */
function noVisionReason(model: string, context: RunJobContext): string {
  const vision = context.catalogue?.visionModel?.() ??
    context.services.backends.flatMap((b) =>
      configuredModels(b).filter(takesImages).map((m) => ({ backend: b.name, model: m.id }))
    )[0];
  const hint = vision
    ? `; "${vision.model}" (backend "${vision.backend}") does: send them with that model`
    : "; no backend this worker serves has a model that does";
  return `Cannot send images to the model "${model}": it does not take images${hint}`;
}
