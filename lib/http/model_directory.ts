/**
 * The models the front door can route to, as the workers' records say (see
 * lib/core/catalogue.ts), read once per request. For each backend the best
 * source wins: what its live workers report; with none live, what its last
 * worker reported (so its jobs can wait for it, or the 503 can name it);
 * with no record at all, its configured models.
 */
import { type Backend, configuredModels, findModel, sameModel } from "../core/backends.ts";
import {
  type BackendReport,
  chats,
  embeds,
  isLive,
  mayEmbed,
  mayTakeImages,
  type ModelInfo,
  takesImages,
  type WorkerRecord,
} from "../core/catalogue.ts";
import type { Services } from "../core/services.ts";
import { ApiError } from "./errors.ts";

/** A model as the front door sees it: the backend that serves it, and whether that backend answers now. */
export interface ModelEntry extends ModelInfo {
  backend: Backend;
  /** A live worker reports its backend up. */
  up: boolean;
}

/** Where a job goes. */
export interface Target {
  backend: Backend;
  model: string;
}

/** What a job asks of the model it is routed to. */
export interface RouteRequest {
  /** The model the client named, if any. */
  model?: string;
  /** The message carries images. */
  images: boolean;
  /** An embeddings job (`POST /v1/embeddings`), not a chat. */
  embeddings?: boolean;
}

/** What `/v1/models` says its list came from: the live workers, or configuration when none is live. */
export type CatalogueSource = "workers" | "configured_defaults";

/** What the front door knows of one backend, from the best source there is. */
interface BackendView {
  backend: Backend;
  /** Reports of its live workers, an `up` one first; or its last worker's report; or none. */
  reports: BackendReport[];
  live: boolean;
  entries: ModelEntry[];
}

/** The backends' models, from the workers' records or, where there are none, from configuration. */
export class ModelDirectory {
  /** Every record kept, live or not. */
  readonly workers: readonly WorkerRecord[];
  readonly source: CatalogueSource;
  #views: BackendView[];
  #live: readonly WorkerRecord[];

  constructor(
    backends: readonly Backend[],
    workers: readonly WorkerRecord[],
    options: { now?: number } = {},
  ) {
    const now = options.now ?? Date.now();
    this.workers = workers;
    // A worker serving only backends this front door does not know cannot take its jobs.
    this.#live = workers.filter((w) => isLive(w, now) && backends.some((b) => serves(w, b)));
    this.source = this.#live.length > 0 ? "workers" : "configured_defaults";
    this.#views = backends.map((backend) => viewOf(backend, workers, now));
  }

  /** Reads the workers' records from the store: one read. */
  static async read(services: Services): Promise<ModelDirectory> {
    const read = services.store.listWorkers().then((workers) =>
      new ModelDirectory(services.backends, workers)
    );
    const entry = { at: performance.now(), directory: read };
    recentReads.set(services.store, entry);
    read.catch(() => {
      if (recentReads.get(services.store) === entry) recentReads.delete(services.store);
    });
    return await read;
  }

  /**
   * The directory as this process last read it, if that was under
   * `maxAgeMs` ago; else a fresh read. A front door that routes many messages
   * a second (a long-lived server, a warm Lambda) so reads the workers'
   * records once for all of them.
   */
  static async recent(services: Services, maxAgeMs: number): Promise<ModelDirectory> {
    const entry = recentReads.get(services.store);
    if (entry && performance.now() - entry.at < maxAgeMs) return await entry.directory;
    return await ModelDirectory.read(services);
  }

  /**
   * What `/v1/models` lists, one entry per id in the backends' order: the
   * models of backends a live worker reports up; with no live worker at all,
   * the configured models.
   */
  models(): ModelEntry[] {
    const entries = this.source === "workers"
      ? this.#views.flatMap((v) => v.live ? v.entries.filter((e) => e.up) : [])
      : this.#views.flatMap((v) =>
        configuredModels(v.backend).map((m) => ({ ...m, backend: v.backend, up: true }))
      );
    const seen = new Set<string>();
    return entries.filter((e) => !seen.has(e.id) && seen.add(e.id));
  }

  /** The models the live workers report for a backend. */
  liveModelsOf(backend: Backend): ModelEntry[] {
    const view = this.#view(backend);
    return view.live ? view.entries : [];
  }

  /** The live workers' latest reports of a backend, an `up` one first. */
  liveReportsOf(backend: Backend): BackendReport[] {
    const view = this.#view(backend);
    return view.live ? view.reports : [];
  }

  /** The live workers serving a backend. */
  liveWorkersOf(backend: Backend): WorkerRecord[] {
    return this.#live.filter((w) => serves(w, backend));
  }

  /** When a worker serving the backend (any backend without one) was last seen, stopped or not. */
  lastSeen(backend?: Backend): Date | undefined {
    const seen = this.workers.filter((w) => !backend || serves(w, backend))
      .map((w) => Date.parse(w.seen_at));
    return seen.length > 0 ? new Date(Math.max(...seen)) : undefined;
  }

  /**
   * The backend and model for a message: the backend that serves the model
   * the client named (a live one that is up first), else by content: a
   * message with images goes to the first model that takes them, text to the
   * first backend's default model. On Ollama a name without a tag is its
   * `:latest`, as Ollama has it. Throws a 404 for a model no backend serves,
   * and a 400 for images to a model known not to see them (one whose
   * capabilities nobody could learn gets them: its backend decides), or for
   * a chat with an embedding model. An embeddings job goes to the model named
   * if it embeds (see {@linkcode ModelDirectory.routeEmbeddings}).
   */
  route(request: RouteRequest): Target {
    if (request.embeddings) return this.routeEmbeddings(request.model);
    if (request.model !== undefined) {
      const entry = this.#find(request.model);
      if (!entry) throw this.#modelNotFound(request.model);
      if (!chats(entry)) throw this.#notForChat(entry.id);
      if (request.images && !mayTakeImages(entry)) throw this.#noVision(entry.id);
      return { backend: entry.backend, model: entry.id };
    }
    if (request.images) {
      // A model nobody could say sees images is tried only when none is known to.
      const target = this.#visionTarget() ?? this.#visionTarget(mayTakeImages);
      if (!target) throw this.#noVision();
      return target;
    }
    const view = this.#views[0];
    const model = defaultModel(view);
    if (!model) {
      throw new ApiError(
        503,
        `No model to route to: backend "${view.backend.name}" has no default model; set ${view.backend.variablePrefix}MODEL or start its worker`,
        { code: "no_model", type: "service_unavailable" },
      );
    }
    return { backend: view.backend, model };
  }

  /**
   * The backend and model for an embeddings job: the model named, if it
   * embeds or nobody could say what it does (its backend decides); without a
   * name, the first that embeds. Throws a 404 for a model no backend serves
   * and a 400 for a chat model, naming one that embeds.
   */
  routeEmbeddings(model: string | undefined): Target {
    if (model === undefined) {
      const target = this.#embeddingTarget();
      if (!target) throw this.#notForEmbeddings();
      return target;
    }
    const entry = this.#find(model);
    if (!entry) throw this.#modelNotFound(model);
    if (!mayEmbed(entry)) throw this.#notForEmbeddings(entry);
    return { backend: entry.backend, model: entry.id };
  }

  /** The backends' views, those with live workers first, each group in the backends' order. */
  #liveFirst(): BackendView[] {
    return [...this.#views.filter((v) => v.live), ...this.#views.filter((v) => !v.live)];
  }

  #view(backend: Backend): BackendView {
    return this.#views.find((v) => v.backend === backend) ?? viewOf(backend, [], Date.now());
  }

  #find(id: string): ModelEntry | undefined {
    const ranked = [
      ...this.#views.filter((v) => v.live).flatMap((v) => v.entries.filter((e) => e.up)),
      ...this.#views.filter((v) => v.live).flatMap((v) => v.entries.filter((e) => !e.up)),
      ...this.#views.filter((v) => !v.live).flatMap((v) => v.entries),
    ];
    return ranked.find((e) => e.id === id) ?? ranked.find((e) => sameModel(e.backend, e.id, id));
  }

  /** The first model that takes images, in the backends' order, each backend's default first. */
  #visionTarget(accepts: (model: ModelEntry) => boolean = takesImages): Target | undefined {
    for (const view of this.#liveFirst()) {
      const models = view.entries.filter(accepts);
      const preferred = models.find((e) => e.id === defaultModel(view) && e.up) ??
        models.find((e) => e.up) ?? models[0];
      if (preferred) return { backend: view.backend, model: preferred.id };
    }
    return undefined;
  }

  /** The first model that embeds, live backends first, one that is up first. */
  #embeddingTarget(): Target | undefined {
    const models = this.#liveFirst().flatMap((v) => v.entries.filter(embeds));
    const chosen = models.find((e) => e.up) ?? models[0];
    return chosen && { backend: chosen.backend, model: chosen.id };
  }

  /** The model a chat without one goes to, if there is one: the first backend's default, live ones first. */
  #chatTarget(): Target | undefined {
    for (const view of this.#liveFirst()) {
      const model = defaultModel(view);
      if (model) return { backend: view.backend, model };
    }
    return undefined;
  }

  #notForChat(model: string): ApiError {
    const chat = this.#chatTarget();
    const hint = chat
      ? `; "${chat.model}" (backend "${chat.backend.name}") chats`
      : "; no backend serves a chat model";
    return new ApiError(
      400,
      `The model "${model}" is an embedding model and does not chat: send its input to POST /v1/embeddings${hint}`,
      { code: "model_not_for_chat", param: "model" },
    );
  }

  #notForEmbeddings(entry?: ModelEntry): ApiError {
    const target = this.#embeddingTarget();
    const subject = entry ? `The model "${entry.id}" does not embed text` : "No model embeds text";
    const hint = target
      ? `; "${target.model}" (backend "${target.backend.name}") does`
      : "; no backend serves a model known to";
    // vLLM's model list cannot tell an embedding model: only configuration can.
    const mark = entry && entry.backend.kind !== "ollama"
      ? ` (if it does, list it in ${entry.backend.variablePrefix}MODELS as ${entry.id}=embedding)`
      : "";
    return new ApiError(400, subject + hint + mark, {
      code: "model_not_for_embeddings",
      param: "model",
    });
  }

  #modelNotFound(model: string): ApiError {
    const down = this.#views.filter((v) =>
      v.live && v.reports.every((r) => r.status === "down") && v.entries.length === 0
    );
    const downNote = down.length > 0
      ? ` (down, models unknown: ${down.map((v) => `backend "${v.backend.name}"`).join(", ")})`
      : "";
    return new ApiError(
      404,
      `The model "${model}" does not exist: no backend serves it${downNote}; GET /v1/models lists the models that can answer`,
      { code: "model_not_found", type: "invalid_request_error", param: "model" },
    );
  }

  #noVision(model?: string): ApiError {
    const vision = this.#visionTarget();
    const subject = model ? `The model "${model}" does not take images` : "No model takes images";
    const hint = vision
      ? `; "${vision.model}" (backend "${vision.backend.name}") does`
      : "; no backend serves a model that does";
    return new ApiError(400, subject + hint, {
      code: "model_without_vision",
      param: model ? "model" : "images",
    });
  }
}

/** The last read of each store's workers' records in this process, and when it was made. */
const recentReads = new WeakMap<object, { at: number; directory: Promise<ModelDirectory> }>();

function serves(worker: WorkerRecord, backend: Backend): boolean {
  return worker.backends.some((b) => b.name === backend.name);
}

/** A backend's view: its live workers' reports, else its last worker's, else configuration. */
function viewOf(backend: Backend, workers: readonly WorkerRecord[], now: number): BackendView {
  const reports = (list: readonly WorkerRecord[]) =>
    list.flatMap((w) => w.backends.filter((r) => r.name === backend.name));
  const live = reports(workers.filter((w) => isLive(w, now)))
    .sort((a, b) => Number(b.status === "up") - Number(a.status === "up"));
  if (live.length > 0) {
    return { backend, reports: live, live: true, entries: entries(backend, live) };
  }
  const last = [...workers].filter((w) => serves(w, backend))
    .sort((a, b) => Date.parse(b.seen_at) - Date.parse(a.seen_at))[0];
  if (last) {
    const report = reports([last]);
    return { backend, reports: report, live: false, entries: entries(backend, report, false) };
  }
  const configured = configuredModels(backend).map((m) => ({ ...m, backend, up: false }));
  return { backend, reports: [], live: false, entries: configured };
}

/** One entry per model the reports list, an `up` report winning. */
function entries(backend: Backend, reports: readonly BackendReport[], live = true): ModelEntry[] {
  const out: ModelEntry[] = [];
  for (const report of reports) {
    for (const model of report.models) {
      if (out.some((e) => e.id === model.id)) continue;
      out.push({ ...model, backend, up: live && report.status === "up" });
    }
  }
  return out;
}

/**
 * The backend's configured default if it is served (under the name it is
 * served by: Ollama's `llava:latest` for `llava`), else its workers' default,
 * else the first chat model served.
 */
function defaultModel(view: BackendView): string | undefined {
  const { backend } = view;
  const configured = backend.model && findModel(backend, view.entries, backend.model);
  if (configured) return configured.id;
  return view.reports.find((r) => r.default_model)?.default_model ??
    view.entries.find(chats)?.id ?? backend.model;
}
