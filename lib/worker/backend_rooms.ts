/**
 * How many jobs of each backend a worker holds, and which of them count
 * against the backend's room. A backend's loop receives only while its room
 * allows; a job counts from its start until its model call ends, except
 * while it fetches images: a job waiting on a slow image host then holds
 * none of the places, or spares, that another key's job needs.
 */
import type { Backend } from "../core/backends.ts";
import { Semaphore } from "./semaphore.ts";

/** The most messages one receive may ask for (SQS's limit). */
export const MAX_BATCH = 10;
/**
 * Spare jobs a backend's loop holds beyond its places, before their model
 * calls: while jobs wait for the model, others are claimed and read, so no
 * place sits idle on store or queue round trips. One per place, but no more
 * than this: a few batches' worth keeps any number of places busy, and each
 * job held costs memory (its message, record, history and their requests).
 * Jobs past their model call, storing the reply and handing the turn on, do
 * not count.
 */
const MAX_SPARE_JOBS = 16;
/**
 * Jobs a worker lets fetch images outside their backends' rooms at once.
 * Each holds its message, record and chat, and its images once fetched
 * (`IMAGE_JOB_MAX_BYTES` at most): past this, a job fetches inside its room,
 * as every job did before, so what a worker holds stays bounded.
 */
export const MAX_IMAGE_JOBS = 64;

/** The jobs a backend's loop holds at most before their model calls end: its places and spares. */
export function capacity(backend: Pick<Backend, "concurrency">): number {
  return backend.concurrency + Math.min(backend.concurrency, MAX_SPARE_JOBS);
}

/**
 * The room a busy backend's loop waits for before it receives again: half its
 * spare jobs, at most one receive's worth. The other half keeps its places
 * busy while the receive and the claims are under way.
 */
export function refillBatch(backend: Pick<Backend, "concurrency">): number {
  const spare = capacity(backend) - backend.concurrency;
  return Math.min(MAX_BATCH, Math.max(1, Math.ceil(spare / 2)));
}

/** Options for {@linkcode BackendRooms}. */
export interface BackendRoomsOptions {
  /** Told when a run stops counting against its backend's room: loops may receive again. */
  onRoom: () => void;
  /** Jobs fetching images outside their rooms at once; default {@linkcode MAX_IMAGE_JOBS}. */
  maxImageJobs?: number;
}

/** One started run's hold on its backend's room. */
export interface RoomHold {
  /**
   * Waits for a model place at the route's backend and returns its release;
   * the release also ends the run's count against its room. Urgent runs go
   * first, then the keys (`key`, an owner id) take turns.
   */
  place(route: string, options: { urgent: boolean; key?: string }): Promise<() => void>;
  /** Runs `work` (fetching the job's images) without counting against the room, while there is room for that. */
  fetchingImages<T>(work: () => Promise<T>): Promise<T>;
  /** The run has ended: it counts no more (calling it again does nothing). */
  leave(): void;
}

/** The rooms and model places of every backend a worker serves. */
export class BackendRooms {
  #options: BackendRoomsOptions;
  /** Started runs per backend that count against its room: at most {@linkcode capacity}, but see `fetchingImages`. */
  #counted = new Map<string, number>();
  /** Places at each backend: only the model call itself takes one. */
  #places = new Map<string, Semaphore>();
  #imageJobs = 0;

  constructor(backends: readonly Backend[], options: BackendRoomsOptions) {
    this.#options = options;
    for (const backend of backends) {
      this.#places.set(backend.name, new Semaphore(backend.concurrency));
    }
  }

  /** How many more messages a backend's loop may take, with `waiting` of its messages not started yet. */
  room(backend: Backend, waiting: number): number {
    return capacity(backend) - waiting - this.#count(backend.name);
  }

  /** Whether a backend's counted runs fill its capacity, so its next message waits. */
  isFull(backend: Backend): boolean {
    return this.#count(backend.name) >= capacity(backend);
  }

  /** Jobs fetching images outside their rooms now. */
  get imageJobs(): number {
    return this.#imageJobs;
  }

  /** Counts a run that starts against its backend's room (by name), until it lets go. */
  enter(backendName: string): RoomHold {
    let counted = true;
    this.#add(backendName, 1);
    const uncount = () => {
      if (!counted) return;
      counted = false;
      this.#add(backendName, -1);
      this.#options.onRoom();
    };
    const maxImageJobs = this.#options.maxImageJobs ?? MAX_IMAGE_JOBS;
    return {
      place: async (route, options) => {
        const place = this.#places.get(route);
        const release = place ? await place.take(options) : () => {};
        return () => {
          release();
          // The room freed is filled a turn of the event loop later: the model
          // request of the job that takes this place goes out before the
          // receives and claims of the jobs that fill it.
          setTimeout(uncount, 0);
        };
      },
      fetchingImages: async (work) => {
        if (!counted || this.#imageJobs >= maxImageJobs) return await work();
        uncount();
        this.#imageJobs++;
        try {
          return await work();
        } finally {
          this.#imageJobs--;
          // Back in its room to wait for a place: the loop takes no more until it has room.
          counted = true;
          this.#add(backendName, 1);
        }
      },
      leave: uncount,
    };
  }

  #count(name: string): number {
    return this.#counted.get(name) ?? 0;
  }

  #add(name: string, change: number): void {
    this.#counted.set(name, this.#count(name) + change);
  }
}
