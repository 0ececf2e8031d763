/**
 * Stored responses: finding a caller's own, reading what its job set aside
 * in the blob store, and the whole chat a response ends, which the next
 * response of a chain (`previous_response_id`) goes on from.
 */
import type { BlobStore } from "../core/blobs.ts";
import { type CompletionParams, isStateless, type Job } from "../core/jobs.ts";
import { jsonDepthProblem } from "../core/json_depth.ts";
import { type ChatMessage, jsonBytes, replyMessage } from "../core/messages.ts";
import { clientConversationId } from "../core/owners.ts";
import type { Services } from "../core/services.ts";
import { isFinished } from "../core/store.ts";
import { ApiError } from "./errors.ts";
import { ownJob } from "./job_wait.ts";
import {
  jobIdOfItem,
  jobIdOfResponse,
  type OutputItem,
  outputItems,
  type ResponseFacts,
  responseId,
} from "./responses_objects.ts";

/**
 * The caller's stored response `id` names, or a 404 naming `param`: an id
 * the gateway never made, another key's response, a job of another API and
 * a response made with `store: false` all read as missing.
 */
export async function storedResponse(
  services: Services,
  id: string | undefined,
  options: { owner: string | undefined; param: string },
): Promise<Job> {
  const jobId = jobIdOfResponse(id);
  const job = jobId ? await ownJob(services.store, jobId, options.owner) : undefined;
  if (job?.api === "responses" && job.response?.store) return job;
  throw new ApiError(
    404,
    jobId
      ? `Response not found: "${id}" (responses are kept JOB_TTL_DAYS, and only with store: true)`
      : "Response not found: that is not a response id as POST /v1/responses makes them",
    { param: options.param, code: "response_not_found", type: "invalid_request_error" },
  );
}

/**
 * The body with each `item_reference` in its input replaced by the item it
 * names: an output item of one of the caller's stored responses, whose id
 * says which (the AI SDK refers to earlier output so). One that names none
 * is a 404 naming it.
 */
export async function withReferencedItems(
  services: Services,
  body: unknown,
  owner: string | undefined,
): Promise<unknown> {
  const input = (body as { input?: unknown } | null)?.input;
  const isReference = (item: unknown): item is { id: string } =>
    (item as { type?: unknown } | null)?.type === "item_reference" &&
    typeof (item as { id?: unknown }).id === "string";
  if (!Array.isArray(input) || !input.some(isReference)) return body;
  const outputs = new Map<string, Promise<OutputItem[]>>();
  const outputOf = (jobId: string) => {
    let items = outputs.get(jobId);
    if (!items) {
      items = ownJob(services.store, jobId, owner).then((job) =>
        job?.api === "responses" && job.response?.store && job.status === "succeeded"
          ? outputItems(job)
          : []
      );
      outputs.set(jobId, items);
    }
    return items;
  };
  const resolved = await Promise.all(input.map(async (item, i) => {
    if (!isReference(item)) return item;
    const jobId = jobIdOfItem(item.id);
    const found = jobId && (await outputOf(jobId)).find((output) => output.id === item.id);
    if (found) return found;
    throw new ApiError(
      404,
      `Item not found: "${item.id}" is no output item of a stored response of this key`,
      { param: `input[${i}].id`, code: "item_not_found", type: "invalid_request_error" },
    );
  }));
  return { ...body as object, input: resolved };
}

/**
 * The chat a stored response ends: the messages it was sent (without its
 * own instructions, which the next response does not inherit), its input,
 * and its output. Refused when it cannot be continued: a response still
 * running, one that failed, one in a conversation (continue that instead),
 * or a chain longer than `CONVERSATION_MAX_BYTES`.
 */
export async function previousChat(services: Services, previous: Job): Promise<ChatMessage[]> {
  const id = `response "${responseId(previous.job_id)}"`;
  const refuse = (status: 400 | 409 | 413, message: string, code = "invalid_previous_response") =>
    new ApiError(status, message, { param: "previous_response_id", code });
  if (!isStateless(previous)) {
    const conversation = clientConversationId(previous.owner, previous.conversation_id);
    throw refuse(
      400,
      `Cannot continue ${id}: it is in conversation "${conversation}"; send conversation instead`,
    );
  }
  if (!isFinished(previous)) {
    throw refuse(409, `Cannot continue ${id}: it is still ${previous.status}; wait for it to end`);
  }
  if (previous.status !== "succeeded") {
    throw refuse(400, `Cannot continue ${id}: it ${previous.status}, so it has no output`);
  }
  const context = await jobContext(previous, services.blobs);
  const chat = [
    ...(previous.response?.instructions ? context.slice(1) : context),
    previous.user_message,
    replyMessage(previous.reply, previous.reply_message),
  ];
  const bytes = jsonBytes(chat);
  if (bytes > services.config.conversationMaxBytes) {
    throw refuse(
      413,
      `Response chain is full: the chat ${id} ends holds ${bytes} bytes, over CONVERSATION_MAX_BYTES (${services.config.conversationMaxBytes}); start a new chain without previous_response_id`,
      "conversation_full",
    );
  }
  return chat;
}

/** What a stored response says besides its output, from its job and what it set aside. */
export async function storedFacts(job: Job, blobs: BlobStore): Promise<ResponseFacts> {
  const [context, params] = await Promise.all([
    job.response?.instructions ? jobContext(job, blobs) : [],
    jobParams(job, blobs),
  ]);
  const instructions = context[0]?.content;
  const facts: ResponseFacts = {
    jobId: job.job_id,
    createdAt: Math.floor(Date.parse(job.created_at) / 1000),
    model: job.model,
    instructions: typeof instructions === "string" ? instructions : null,
    params,
    record: job.response ?? { store: true },
  };
  if (!isStateless(job)) {
    facts.conversation = clientConversationId(job.owner, job.conversation_id);
  }
  return facts;
}

/** The messages a job was sent before its own, from its record or the blob store. */
async function jobContext(job: Job, blobs: BlobStore): Promise<ChatMessage[]> {
  if (!job.context_ref) return job.context ?? [];
  return await storedJson(blobs, job.context_ref, job);
}

/** The backend's fields a job was sent with, from its record or the blob store. */
async function jobParams(job: Job, blobs: BlobStore): Promise<CompletionParams | undefined> {
  if (!job.params_ref) return job.params;
  return await storedJson(blobs, job.params_ref, job);
}

/** A blob's JSON; its depth is checked before parsing, which takes time and stack in proportion. */
async function storedJson<T>(blobs: BlobStore, ref: string, job: Job): Promise<T> {
  const blob = await blobs.get(ref);
  const text = blob && new TextDecoder().decode(blob.bytes);
  if (text === undefined || jsonDepthProblem(text)) {
    throw new ApiError(
      404,
      `Response not found: what response "resp_${job.job_id}" was sent is no longer kept (BLOB_TTL_DAYS)`,
      { code: "response_not_found", type: "invalid_request_error" },
    );
  }
  return JSON.parse(text);
}
