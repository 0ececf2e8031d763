/**
 * Watches the worker's store calls, so the bench learns the moment each job
 * succeeds without polling the store (polling would load the very storage
 * being measured).
 */
import type { Store } from "../../lib/core/store.ts";

/** What the watch has seen so far. */
export interface JobWatch {
  /** The store to hand the worker: the real one, observed. */
  readonly store: Store;
  /** performance.now() when each job's success was stored. */
  readonly doneAt: Map<string, number>;
  /** performance.now() when the worker sent each job's completing write (the first time). */
  readonly completingAt: Map<string, number>;
  /** Failed attempts that will be retried. */
  readonly retries: number;
  /** Resolves when `jobIds` have all succeeded; rejects on the first failed job. */
  allDone(jobIds: ReadonlySet<string>, timeoutMs: number): Promise<void>;
}

/** Wraps a store; every call still goes to it unchanged. */
export function watchJobs(inner: Store): JobWatch {
  const doneAt = new Map<string, number>();
  const completingAt = new Map<string, number>();
  let retries = 0;
  let failure: Error | undefined;
  const listeners = new Set<() => void>();
  const notify = () => listeners.forEach((listener) => listener());

  const store: Store = new Proxy(inner, {
    get(target, property) {
      const value = Reflect.get(target, property, target);
      if (typeof value !== "function") return value;
      const method = (value as (...args: unknown[]) => unknown).bind(target);
      if (property === "completeJob") {
        return async (...args: Parameters<Store["completeJob"]>) => {
          if (!completingAt.has(args[0].job_id)) {
            completingAt.set(args[0].job_id, performance.now());
          }
          const result = await method(...args);
          if (!doneAt.has(args[0].job_id)) doneAt.set(args[0].job_id, performance.now());
          notify();
          return result;
        };
      }
      if (property === "failJob") {
        return async (...args: Parameters<Store["failJob"]>) => {
          failure ??= new Error(`Bench failed: job ${args[0]} failed: ${args[1]}`);
          notify();
          return await method(...args);
        };
      }
      if (property === "retryJob") {
        return (...args: Parameters<Store["retryJob"]>) => {
          retries++;
          return method(...args);
        };
      }
      return method;
    },
  });

  return {
    store,
    doneAt,
    completingAt,
    get retries() {
      return retries;
    },
    allDone(jobIds, timeoutMs) {
      return new Promise((resolve, reject) => {
        const finish = (error?: Error) => {
          clearTimeout(timer);
          listeners.delete(check);
          if (error) reject(error);
          else resolve();
        };
        const check = () => {
          if (failure) return finish(failure);
          if (doneAt.size < jobIds.size) return;
          for (const id of jobIds) if (!doneAt.has(id)) return;
          finish();
        };
        const timer = setTimeout(() => {
          const missing = [...jobIds].filter((id) => !doneAt.has(id)).length;
          finish(
            new Error(
              `Bench timed out: ${missing} of ${jobIds.size} jobs had not succeeded after ${
                timeoutMs / 1000
              } s`,
            ),
          );
        }, timeoutMs);
        listeners.add(check);
        check();
      });
    },
  };
}
