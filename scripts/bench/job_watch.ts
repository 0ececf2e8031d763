/**
 * Watches the worker's store calls, so the bench learns the moment each job
 * succeeds without polling the store (polling would load the very storage
 * being measured). A worker in a process of its own reports the same events
 * on its standard output (scripts/bench/worker_process.ts).
 */
import type { Store } from "../../lib/core/store.ts";

/** What the watch saw, as it happens. */
export interface WatchEvent {
  event: "completing" | "done" | "failed" | "retry";
  job_id: string;
  /** performance.timeOrigin + performance.now(): comparable across processes. */
  at: number;
  error?: string;
}

/** What the bench knows of its jobs' ends so far. */
export interface JobProgress {
  /** performance.now() when each job's success was stored. */
  readonly doneAt: Map<string, number>;
  /** performance.now() when the worker sent each job's completing write (the first time). */
  readonly completingAt: Map<string, number>;
  /** Failed attempts that will be retried. */
  readonly retries: number;
  /** Resolves when `jobIds` have all succeeded; rejects on the first failed job. */
  allDone(jobIds: ReadonlySet<string>, timeoutMs: number): Promise<void>;
}

/** A {@linkcode JobProgress} fed with events. */
export class JobTracker implements JobProgress {
  readonly doneAt = new Map<string, number>();
  readonly completingAt = new Map<string, number>();
  #retries = 0;
  #failure?: Error;
  #listeners = new Set<() => void>();

  get retries(): number {
    return this.#retries;
  }

  /** Takes one event; its `at` is turned into this process's performance.now(). */
  record(event: WatchEvent): void {
    const at = event.at - performance.timeOrigin;
    if (event.event === "completing" && !this.completingAt.has(event.job_id)) {
      this.completingAt.set(event.job_id, at);
    } else if (event.event === "done" && !this.doneAt.has(event.job_id)) {
      this.doneAt.set(event.job_id, at);
    } else if (event.event === "failed") {
      this.#failure ??= new Error(`Bench failed: job ${event.job_id} failed: ${event.error}`);
    } else if (event.event === "retry") {
      this.#retries++;
    }
    this.#listeners.forEach((listener) => listener());
  }

  allDone(jobIds: ReadonlySet<string>, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const finish = (error?: Error) => {
        clearTimeout(timer);
        this.#listeners.delete(check);
        if (error) reject(error);
        else resolve();
      };
      const check = () => {
        if (this.#failure) return finish(this.#failure);
        if (this.doneAt.size < jobIds.size) return;
        for (const id of jobIds) if (!this.doneAt.has(id)) return;
        finish();
      };
      const timer = setTimeout(() => {
        const missing = [...jobIds].filter((id) => !this.doneAt.has(id)).length;
        finish(
          new Error(
            `Bench timed out: ${missing} of ${jobIds.size} jobs had not succeeded after ${
              timeoutMs / 1000
            } s`,
          ),
        );
      }, timeoutMs);
      this.#listeners.add(check);
      check();
    });
  }
}

/** A watched store and what it saw. */
export interface JobWatch extends JobProgress {
  /** The store to hand the worker: the real one, observed. */
  readonly store: Store;
}

/** Wraps a store; every call still goes to it unchanged. `report` hears of each event too. */
export function watchJobs(inner: Store, report?: (event: WatchEvent) => void): JobWatch {
  const tracker = new JobTracker();
  const tell = (event: WatchEvent["event"], jobId: string, error?: string) => {
    const seen: WatchEvent = {
      event,
      job_id: jobId,
      at: performance.timeOrigin + performance.now(),
      error,
    };
    tracker.record(seen);
    report?.(seen);
  };

  const store: Store = new Proxy(inner, {
    get(target, property) {
      const value = Reflect.get(target, property, target);
      if (typeof value !== "function") return value;
      const method = (value as (...args: unknown[]) => unknown).bind(target);
      if (property === "completeJob") {
        return async (...args: Parameters<Store["completeJob"]>) => {
          tell("completing", args[0].job_id);
          const result = await method(...args);
          tell("done", args[0].job_id);
          return result;
        };
      }
      if (property === "failJob") {
        return async (...args: Parameters<Store["failJob"]>) => {
          tell("failed", args[0], args[1]);
          return await method(...args);
        };
      }
      if (property === "retryJob") {
        return (...args: Parameters<Store["retryJob"]>) => {
          tell("retry", args[0], args[1]);
          return method(...args);
        };
      }
      return method;
    },
  });

  return {
    store,
    doneAt: tracker.doneAt,
    completingAt: tracker.completingAt,
    get retries() {
      return tracker.retries;
    },
    allDone: (jobIds, timeoutMs) => tracker.allDone(jobIds, timeoutMs),
  };
}
