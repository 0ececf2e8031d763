/**
 * The model catalogue: what each worker's backends serve, as the worker
 * found out and published with its heartbeat. The front door cannot ask the
 * backends itself (the worker only makes outbound connections), so it reads
 * these records to list models, route by model and tell who is alive.
 */
import type { LlmKind } from "./config.ts";
import type { WorkerCounters } from "./metrics.ts";

/** One model a backend serves. */
export interface ModelInfo {
  id: string;
  /** Epoch seconds the backend gives for it (Ollama: when it was pulled). */
  created?: number;
  /**
   * What it can do, in Ollama's names: "completion" (it chats), "embedding"
   * (it embeds text), "vision", "tools", …
   */
  capabilities: string[];
  /**
   * Set when the backend could not say what the model can do (Ollama's
   * `/api/show` failed): it is listed as a chat model, and images sent to it
   * pass through for the backend to take or refuse.
   */
  capabilities_unknown?: true;
}

/** What a worker found when it last asked one of its backends. */
export interface BackendReport {
  /** The backend's name (its route). */
  name: string;
  kind: LlmKind;
  status: "up" | "down";
  /** Why it is down, without credentials. */
  error?: string;
  /** When the worker last asked it (ISO 8601). */
  checked_at: string;
  /** The model the worker's configuration makes the default, or the first one served. */
  default_model?: string;
  /** The models it serves; for a backend that is down, those it served last time, if any. */
  models: ModelInfo[];
}

/**
 * A worker's heartbeat: when it was seen, until when it counts as live, what
 * it serves, and what it has counted since it started (for `GET /metrics`).
 */
export interface WorkerRecord {
  worker_id: string;
  /** When the worker last wrote this record (ISO 8601). */
  seen_at: string;
  /** Epoch ms until which the worker counts as live; a worker that stops sets it to now. */
  live_until: number;
  backends: BackendReport[];
  /** Absent in the records of workers older than the counters. */
  counters?: WorkerCounters;
}

/** How long a store keeps a worker's record after its last heartbeat. */
export const WORKER_RECORD_KEEP_MS = 86_400_000;

/** Whether a worker counts as live now: it has renewed its record in time and not stopped. */
export function isLive(record: WorkerRecord, now = Date.now()): boolean {
  return record.live_until > now;
}

/** Whether a store should still keep a worker's record. */
export function isKept(record: WorkerRecord, now = Date.now()): boolean {
  return Date.parse(record.seen_at) > now - WORKER_RECORD_KEEP_MS;
}

/** Whether a model is known to take image parts. */
export function takesImages(model: Pick<ModelInfo, "capabilities">): boolean {
  return model.capabilities.includes("vision");
}

/**
 * Whether images may go to a model: it takes them, or nobody could say
 * whether it does, and its backend decides.
 */
export function mayTakeImages(
  model: Pick<ModelInfo, "capabilities" | "capabilities_unknown">,
): boolean {
  return takesImages(model) || model.capabilities_unknown === true;
}

/** Whether a model answers chats; an embedding model does not. */
export function chats(model: Pick<ModelInfo, "capabilities">): boolean {
  return model.capabilities.includes("completion");
}

/** Whether a model is known to embed text. */
export function embeds(model: Pick<ModelInfo, "capabilities">): boolean {
  return model.capabilities.includes("embedding");
}

/**
 * Whether embedding requests may go to a model: it embeds, or nobody could
 * say what it does, and its backend decides.
 */
export function mayEmbed(
  model: Pick<ModelInfo, "capabilities" | "capabilities_unknown">,
): boolean {
  return embeds(model) || model.capabilities_unknown === true;
}
