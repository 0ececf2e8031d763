/**
 * Whose job a worker starts next, and how many of a key's jobs run at once.
 *
 * Waiting messages start priority lane first, then one key at a time: the key
 * that started a job least recently goes first, each key's own jobs oldest
 * first. A key that floods its backend delays itself, not the others.
 *
 * A key with an in-flight limit (`in_flight` in its tickets) runs no more jobs
 * at once than that, over every worker: each run joins the key's set of
 * running jobs in the store (lib/core/key_counters.ts) before it starts, and
 * leaves it when it ends; a worker that dies leaves a member that is dropped
 * once its job's lease lapses. A job that must wait holds no place: the
 * worker keeps a few of the key's messages to start the moment a run of the
 * key ends, and puts the rest back on the queue for a while, uncounted
 * (`JobQueue.defer`), so they take no room from other keys' jobs.
 */
import { errorMessage } from "../core/error_message.ts";
import { joinSet, type KeyCounters, slotMember } from "../core/key_counters.ts";
import type { Logger } from "../core/log.ts";
import { type JobQueue, LANES, type ReceivedJob } from "../core/queue.ts";

/** How long a key refused a place stays refused before the worker asks again. */
export const RECHECK_MS = 1000;
/** Messages kept per waiting key at least, however low its limit. */
const MIN_KEPT = 2;
/** A run's length assumed for a key the worker has not run yet (s). */
const DEFAULT_RUN_S = 5;
/** The longest a deferred message stays away (s). */
const MAX_DEFER_S = 60;

/** A run's place among its key's running jobs: its member of the set, when the key has a limit. */
export interface KeyPlace {
  member?: string;
}

/** Options for {@linkcode KeyTurns}. */
export interface KeyTurnsOptions {
  counters: KeyCounters;
  /** Where messages a waiting key need not hold go back to (`JobQueue.defer`). */
  queue: JobQueue;
  logger: Logger;
  /** How long a member counts before its job need be running (see lib/core/key_counters.ts `isStale`). */
  graceMs: number;
  /** Told when a key refused a moment ago may be asked again. */
  onRecheck: () => void;
}

/** The worker's turns between keys, and its share of each key's in-flight limit. */
export class KeyTurns {
  #options: KeyTurnsOptions;
  /** Runs of each key on this worker, from the moment they ask for a place. */
  #running = new Map<string, number>();
  /** When each key last started a run (a sequence number): the least recent goes first. */
  #lastStart = new Map<string, number>();
  #sequence = 0;
  /** Keys whose places another worker holds, until when. */
  #refusedUntil = new Map<string, number>();
  /** Each key's runs on this worker: how long they take, smoothed (s). */
  #runSeconds = new Map<string, number>();
  #recheck?: ReturnType<typeof setTimeout>;

  constructor(options: KeyTurnsOptions) {
    this.#options = options;
  }

  /** Messages in the order they should start: priority lane first, then the keys in turn. */
  order(waiting: readonly ReceivedJob[]): ReceivedJob[] {
    return LANES.flatMap((lane) => {
      const byOwner = new Map<string, ReceivedJob[]>();
      for (const message of waiting) {
        if (message.lane !== lane) continue;
        const owner = ownerOf(message);
        byOwner.set(owner, [...byOwner.get(owner) ?? [], message]);
      }
      const owners = [...byOwner.keys()].sort((a, b) => this.#started(a) - this.#started(b));
      const ordered: ReceivedJob[] = [];
      for (let round = 0; ordered.length < waiting.length; round++) {
        let added = false;
        for (const owner of owners) {
          const message = byOwner.get(owner)![round];
          if (message) {
            ordered.push(message);
            added = true;
          }
        }
        if (!added) break;
      }
      return ordered;
    });
  }

  /** Whether a message must wait for its key: as many of the key's jobs run as it may have. */
  mustWait(message: ReceivedJob): boolean {
    const limit = message.ticket.in_flight;
    if (!limit || message.ticket.line_check) return false;
    const owner = ownerOf(message);
    return (this.#running.get(owner) ?? 0) >= limit ||
      (this.#refusedUntil.get(owner) ?? 0) > Date.now();
  }

  /**
   * Puts back on the queue, for a while, the waiting messages not worth
   * holding: of each key that must wait, all but the oldest few, which are
   * kept to start the moment it may. Returns the messages kept; `forget` is
   * told of each put back.
   */
  putBackSurplus(
    waiting: readonly ReceivedJob[],
    forget: (message: ReceivedJob) => void,
  ): ReceivedJob[] {
    const kept = new Map<string, number>();
    return waiting.filter((message) => {
      if (!this.mustWait(message)) return true;
      const owner = ownerOf(message);
      const count = (kept.get(owner) ?? 0) + 1;
      kept.set(owner, count);
      if (count <= Math.max(MIN_KEPT, message.ticket.in_flight ?? 0)) return true;
      forget(message);
      this.#options.queue.defer(message, this.#deferSeconds(owner)).catch((err) =>
        this.#options.logger.warn("Could not put back a job whose key is at its limit", {
          job_id: message.ticket.job_id,
          error: errorMessage(err),
        })
      );
      return false;
    });
  }

  /** How long a key's surplus message stays away: about two of its runs, when its kept ones will have started. */
  #deferSeconds(owner: string): number {
    const run = this.#runSeconds.get(owner) ?? DEFAULT_RUN_S;
    return Math.min(MAX_DEFER_S, Math.max(1, Math.ceil(2 * run)));
  }

  /**
   * Takes a place for a message's run among its key's running jobs; undefined
   * when the key has them all, over every worker, or the store cannot say:
   * the key is then refused for {@linkcode RECHECK_MS}.
   */
  async begin(message: ReceivedJob): Promise<KeyPlace | undefined> {
    const owner = ownerOf(message);
    this.#running.set(owner, (this.#running.get(owner) ?? 0) + 1);
    this.#lastStart.set(owner, ++this.#sequence);
    const limit = message.ticket.in_flight;
    if (!limit || message.ticket.line_check) return {};
    const member = slotMember(message.ticket.job_id);
    const joined = await joinSet(this.#options.counters, "running", owner, member, limit, {
      graceMs: this.#options.graceMs,
    }).catch((err) => {
      this.#options.logger.warn("Could not count a job among its key's running jobs; it waits", {
        job_id: message.ticket.job_id,
        error: errorMessage(err),
      });
      return undefined;
    });
    if (joined?.joined) return { member };
    this.#uncount(owner);
    this.#refusedUntil.set(owner, Date.now() + RECHECK_MS);
    clearTimeout(this.#recheck);
    this.#recheck = setTimeout(() => this.#options.onRecheck(), RECHECK_MS);
    return undefined;
  }

  /** A run has ended: its place is given back, and its key may start another. */
  async end(message: ReceivedJob, place: KeyPlace, ms?: number): Promise<void> {
    const owner = ownerOf(message);
    if (place.member) {
      await this.#options.counters.removeMembers("running", owner, [place.member]).catch((err) =>
        // Dropped once its job has ended, when the key's set is next full.
        this.#options.logger.warn(
          "Could not give back a job's place among its key's running jobs",
          {
            job_id: message.ticket.job_id,
            error: errorMessage(err),
          },
        )
      );
    }
    this.#uncount(owner);
    this.#refusedUntil.delete(owner);
    if (ms !== undefined) {
      const before = this.#runSeconds.get(owner);
      const seconds = ms / 1000;
      this.#runSeconds.set(owner, before === undefined ? seconds : 0.7 * before + 0.3 * seconds);
    }
  }

  /** Stops the pending recheck, for a worker that stops. */
  close(): void {
    clearTimeout(this.#recheck);
  }

  #started(owner: string): number {
    return this.#lastStart.get(owner) ?? 0;
  }

  #uncount(owner: string): void {
    const left = (this.#running.get(owner) ?? 1) - 1;
    if (left > 0) this.#running.set(owner, left);
    else this.#running.delete(owner);
  }
}

/** The key a message belongs to; messages made without keys share one. */
function ownerOf(message: ReceivedJob): string {
  return message.ticket.owner ?? "";
}
