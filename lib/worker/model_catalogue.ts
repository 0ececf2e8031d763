/**
 * The worker's own view of what its backends serve: refreshed at start and
 * every `MODEL_REFRESH_S`, a backend that is down every `MODEL_RETRY_S`,
 * published with each heartbeat, and read when a job runs (does its model
 * take images?). A backend a job has just been answered by is up, whatever
 * the last check said.
 */
import { type Backend, findModel, sameModel } from "../core/backends.ts";
import { type BackendReport, type ModelInfo, takesImages } from "../core/catalogue.ts";
import type { Logger } from "../core/log.ts";
import { describeUrl } from "../core/text.ts";
import { checkBackend } from "./backend_models.ts";

/** Options for {@linkcode ModelCatalogue}. */
export interface ModelCatalogueOptions {
  logger: Logger;
  /** Time allowed for each request to a backend. */
  timeoutMs: number;
}

/** How many model ids a log line names at most. */
const LOGGED_MODELS = 20;

/** The latest report of each backend a worker serves. */
export class ModelCatalogue {
  #backends: readonly Backend[];
  #options: ModelCatalogueOptions;
  #reports = new Map<string, BackendReport>();
  /** The check under way of each backend: one at a time, a second call joins it. */
  #checking = new Map<string, Promise<void>>();
  /** When a job was last answered by each backend that had been reported down. */
  #answeredAt = new Map<string, number>();

  constructor(backends: readonly Backend[], options: ModelCatalogueOptions) {
    this.#backends = backends;
    this.#options = options;
  }

  /** Asks every backend at once, or those named; a backend already being asked is not asked twice. */
  async refresh(names?: readonly string[]): Promise<void> {
    const backends = names ? this.#backends.filter((b) => names.includes(b.name)) : this.#backends;
    await Promise.all(backends.map((b) => this.#check(b)));
  }

  /** Asks again the backends last found down; resolves to whether any of them is up now. */
  async recheckDown(): Promise<boolean> {
    const down = this.#backends.filter((b) => this.#reports.get(b.name)?.status === "down");
    await Promise.all(down.map((b) => this.#check(b)));
    return down.some((b) => this.#reports.get(b.name)?.status === "up");
  }

  /**
   * Marks a backend up that has just answered a job: a model call that
   * succeeded is better news than a check that failed. Returns whether its
   * report changed (it was down), so the worker publishes at once.
   */
  answered(backendName: string): boolean {
    const report = this.#reports.get(backendName);
    if (report?.status !== "down") return false;
    this.#answeredAt.set(backendName, Date.now());
    const { error: _error, ...rest } = report;
    this.#reports.set(backendName, {
      ...rest,
      status: "up",
      checked_at: new Date().toISOString(),
    });
    this.#options.logger.info("Backend is up: it answered a job", { backend: backendName });
    return true;
  }

  /** The latest reports, in configuration order; a backend not asked yet is left out. */
  reports(): BackendReport[] {
    return this.#backends.flatMap((b) => this.#reports.get(b.name) ?? []);
  }

  /** What the latest report says of a model, if the backend listed it (`llava` finds Ollama's `llava:latest`). */
  model(backend: string, id: string): ModelInfo | undefined {
    const known = this.#backends.find((b) => b.name === backend);
    const models = this.#reports.get(backend)?.models ?? [];
    return known ? findModel(known, models, id) : models.find((m) => m.id === id);
  }

  /** A model that takes images, for a message that names one: an `up` backend's first, its default first. */
  visionModel(): { backend: string; model: string } | undefined {
    const reports = this.reports().sort((a, b) =>
      Number(b.status === "up") - Number(a.status === "up")
    );
    for (const report of reports) {
      const models = report.models.filter(takesImages);
      const chosen = models.find((m) => m.id === report.default_model) ?? models[0];
      if (chosen) return { backend: report.name, model: chosen.id };
    }
    return undefined;
  }

  #check(backend: Backend): Promise<void> {
    let checking = this.#checking.get(backend.name);
    if (!checking) {
      checking = this.#ask(backend).finally(() => this.#checking.delete(backend.name));
      this.#checking.set(backend.name, checking);
    }
    return checking;
  }

  async #ask(backend: Backend): Promise<void> {
    const started = Date.now();
    const report = await checkBackend(backend, {
      timeoutMs: this.#options.timeoutMs,
      previous: this.#reports.get(backend.name),
    });
    // A job answered while this check was under way is newer news than its failure.
    if (report.status === "down" && (this.#answeredAt.get(backend.name) ?? 0) >= started) return;
    const previous = this.#reports.get(backend.name);
    this.#reports.set(backend.name, report);
    const { logger } = this.#options;
    if (report.status === "down" && previous?.status !== "down") {
      logger.warn("Backend is down; published as down until it answers", {
        backend: backend.name,
        base_url: backend.baseUrl && describeUrl(backend.baseUrl),
        set_by: backend.baseUrlVariable,
        error: report.error,
      });
    } else if (report.status === "up" && previous?.status !== "up") {
      logger.info("Backend is up", {
        backend: backend.name,
        default_model: report.default_model,
        models: report.models.slice(0, LOGGED_MODELS).map((m) =>
          m.capabilities.length > 1 ? `${m.id} (${m.capabilities.join(", ")})` : m.id
        ),
      });
      if (
        backend.model &&
        !(report.default_model && sameModel(backend, report.default_model, backend.model))
      ) {
        logger.warn("The configured default model is not served; using another", {
          backend: backend.name,
          configured: backend.model,
          default_model: report.default_model,
        });
      }
    }
  }
}
