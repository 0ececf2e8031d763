/**
 * The worker's own view of what its backends serve: refreshed at start and
 * every `MODEL_REFRESH_S`, published with each heartbeat, and read when a
 * job runs (does its model take images?).
 */
import type { Backend } from "../core/backends.ts";
import type { BackendReport, ModelInfo } from "../core/catalogue.ts";
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
  #refreshing?: Promise<void>;

  constructor(backends: readonly Backend[], options: ModelCatalogueOptions) {
    this.#backends = backends;
    this.#options = options;
  }

  /** Asks every backend at once; one refresh at a time (a second call joins the first). */
  refresh(): Promise<void> {
    this.#refreshing ??= Promise.all(this.#backends.map((b) => this.#check(b)))
      .then(() => {})
      .finally(() => this.#refreshing = undefined);
    return this.#refreshing;
  }

  /** The latest reports, in configuration order; a backend not asked yet is left out. */
  reports(): BackendReport[] {
    return this.#backends.flatMap((b) => this.#reports.get(b.name) ?? []);
  }

  /** What the latest report says of a model, if the backend listed it. */
  model(backend: string, id: string): ModelInfo | undefined {
    return this.#reports.get(backend)?.models.find((m) => m.id === id);
  }

  async #check(backend: Backend): Promise<void> {
    const previous = this.#reports.get(backend.name);
    const report = await checkBackend(backend, { timeoutMs: this.#options.timeoutMs, previous });
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
      if (backend.model && report.default_model !== backend.model) {
        logger.warn("The configured default model is not served; using another", {
          backend: backend.name,
          configured: backend.model,
          default_model: report.default_model,
        });
      }
    }
  }
}
