/**
 * The worker's record in the store: what it serves (its catalogue of models,
 * lib/core/catalogue.ts) and the counters of its runs, written at each
 * heartbeat and whenever what it serves changes. The front door reads it for
 * routing, `GET /healthz` and `GET /metrics`.
 */
import type { WorkerRecord } from "../core/catalogue.ts";
import { errorMessage } from "../core/error_message.ts";
import type { Logger } from "../core/log.ts";
import type { Services } from "../core/services.ts";
import type { WorkerMetrics } from "./metrics.ts";
import type { ModelCatalogue } from "./model_catalogue.ts";

/** Heartbeats a worker may miss before it no longer counts as live. */
const LIVE_FOR_BEATS = 3;

/** Options for {@linkcode WorkerRecordWriter}. */
export interface WorkerRecordOptions {
  id: string;
  services: Services;
  logger: Logger;
  catalogue: ModelCatalogue;
  metrics: WorkerMetrics;
  beatEveryMs: number;
  /** Aborted once the worker stops: its record then says it is live no more. */
  stopping: AbortSignal;
}

/** Writes one worker's record, one write after another. */
export class WorkerRecordWriter {
  #options: WorkerRecordOptions;
  /** The last record write: writes go one after another, so a late heartbeat cannot undo a stop. */
  #publishing: Promise<unknown> = Promise.resolve();

  constructor(options: WorkerRecordOptions) {
    this.#options = options;
  }

  /**
   * Writes this worker's record: seen now, live for a few heartbeats (until
   * now once it is stopping), with the latest report of each backend and the
   * counters of its runs so far.
   */
  publish(): Promise<void> {
    const { id, services, catalogue, metrics, beatEveryMs, stopping } = this.#options;
    const write = this.#publishing.then(() => {
      const now = Date.now();
      const record: WorkerRecord = {
        worker_id: id,
        seen_at: new Date(now).toISOString(),
        live_until: stopping.aborted ? now : now + LIVE_FOR_BEATS * beatEveryMs,
        backends: catalogue.reports(),
        counters: metrics.snapshot(),
      };
      return services.store.saveWorker(record);
    });
    this.#publishing = write.catch(() => {});
    return write;
  }

  /** Asks the backends again what they serve (or only those named), and publishes the answer at once. */
  refresh(names?: string[]): void {
    this.#publishAfter(this.#options.catalogue.refresh(names).then(() => true));
  }

  /** Asks again the backends found down; one that is up now is published at once. */
  retryDown(): void {
    this.#publishAfter(this.#options.catalogue.recheckDown());
  }

  /**
   * A job of this backend has just succeeded: if it was reported down, it is
   * published up at once, and asked again what it serves.
   */
  answered(backend: string): void {
    if (!this.#options.catalogue.answered(backend)) return;
    this.#publishAfter(Promise.resolve(true));
    this.refresh([backend]);
  }

  /** Publishes the worker's record once `changed` resolves to true, unless it is stopping. */
  #publishAfter(changed: Promise<boolean>): void {
    changed.then((yes) => {
      if (yes && !this.#options.stopping.aborted) return this.publish();
    }).catch((err) =>
      this.#options.logger.warn("Could not publish the models this worker serves", {
        error: errorMessage(err),
      })
    );
  }
}
