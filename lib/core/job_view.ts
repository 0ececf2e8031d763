/** What clients see of a job record: no owner, lease or internal fields, and their own conversation id. */
import type { Job } from "./jobs.ts";
import { clientConversationId } from "./owners.ts";

/**
 * A job as `GET /jobs/:id` shows it. An embeddings job shows how many vectors
 * it made and their length; the vectors themselves come back only to the
 * request that made it (or repeats it with its `Idempotency-Key`).
 */
export type JobView =
  & Omit<
    Job,
    | "owner"
    | "lease_until"
    | "partial"
    | "partial_reasoning"
    | "context"
    | "context_ref"
    | "params"
    | "params_ref"
    | "mode"
    | "stream"
    | "generation"
    | "sent_at"
    | "embeddings"
  >
  & { embeddings?: { count: number; dimensions: number } };

/** The client's view of a job. */
export function jobView(job: Job): JobView {
  const {
    owner,
    lease_until: _lease,
    partial: _partial,
    partial_reasoning: _reasoning,
    context: _context,
    context_ref: _contextRef,
    params: _params,
    params_ref: _paramsRef,
    mode: _mode,
    stream: _stream,
    generation: _generation,
    sent_at: _sent,
    embeddings,
    ...view
  } = job;
  return {
    ...view,
    conversation_id: clientConversationId(owner, job.conversation_id),
    ...(embeddings
      ? { embeddings: { count: embeddings.count, dimensions: embeddings.dimensions } }
      : {}),
  };
}
