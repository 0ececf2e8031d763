/** Options for {@linkcode Semaphore.take}. */
export interface TakeOptions {
  /** Urgent waiters go before the others. */
  urgent?: boolean;
  /** Ends the wait with its reason, taking no place. */
  signal?: AbortSignal;
  /**
   * Whose place it is (an API key's owner id): among waiters alike urgent,
   * the key served least recently goes first, each key's own in order.
   */
  key?: string;
}

/** A waiter in one of the semaphore's lines. */
interface Waiter {
  wake: () => void;
  key: string;
}

/**
 * A counting semaphore: at most `limit` holders at once; urgent waiters go
 * before the others, and among waiters alike, the keys take turns.
 */
export class Semaphore {
  #free: number;
  #urgent: Waiter[] = [];
  #waiting: Waiter[] = [];
  /** When each key was last given a place (a sequence number); forgotten when the semaphore is idle. */
  #served = new Map<string, number>();
  #sequence = 0;

  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1) {
      throw new RangeError(
        `Cannot create semaphore: limit must be a whole number of at least 1, got ${limit}`,
      );
    }
    this.#free = limit;
  }

  /**
   * Waits for a place and returns the function that gives it back (calling it
   * again does nothing). When `signal` aborts first, the wait ends with its
   * reason and takes no place.
   */
  acquire(urgent = false, signal?: AbortSignal): Promise<() => void> {
    return this.take({ urgent, signal });
  }

  /** Waits for a place, as {@linkcode Semaphore.acquire}, in its key's turn. */
  async take(options: TakeOptions = {}): Promise<() => void> {
    const { signal } = options;
    const key = options.key ?? "";
    signal?.throwIfAborted();
    if (this.#free > 0) {
      this.#free--;
    } else {
      const line = options.urgent ? this.#urgent : this.#waiting;
      await new Promise<void>((resolve, reject) => {
        const abort = () => {
          line.splice(line.indexOf(waiter), 1);
          reject(signal!.reason);
        };
        const waiter: Waiter = {
          key,
          wake: () => {
            signal?.removeEventListener("abort", abort);
            resolve();
          },
        };
        line.push(waiter);
        signal?.addEventListener("abort", abort, { once: true });
      });
    }
    this.#served.set(key, ++this.#sequence);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#next(this.#urgent) ?? this.#next(this.#waiting);
      if (next) return next.wake();
      this.#free++;
      if (this.#urgent.length === 0 && this.#waiting.length === 0) this.#served.clear();
    };
  }

  /** Takes out of a line the first waiter of the key served least recently. */
  #next(line: Waiter[]): Waiter | undefined {
    let best = -1;
    for (let i = 0; i < line.length; i++) {
      const served = this.#served.get(line[i].key) ?? 0;
      if (best < 0 || served < (this.#served.get(line[best].key) ?? 0)) best = i;
    }
    return best < 0 ? undefined : line.splice(best, 1)[0];
  }
}

/**
 * A semaphore per key (an API key's owner id, say), made when a key first
 * asks and forgotten once nobody holds or waits for it: the keys it keeps are
 * only those in use, however many there are.
 */
export class KeyedSemaphore {
  #limit: number;
  #keys = new Map<string, { semaphore: Semaphore; users: number }>();

  constructor(limit: number) {
    new Semaphore(limit); // checks the limit now, not at the first acquire
    this.#limit = limit;
  }

  /** Waits for one of the key's places, as {@linkcode Semaphore.acquire}. */
  async acquire(key: string, signal?: AbortSignal): Promise<() => void> {
    let entry = this.#keys.get(key);
    if (!entry) {
      entry = { semaphore: new Semaphore(this.#limit), users: 0 };
      this.#keys.set(key, entry);
    }
    entry.users++;
    const done = () => {
      if (--entry.users === 0) this.#keys.delete(key);
    };
    let release: () => void;
    try {
      release = await entry.semaphore.acquire(false, signal);
    } catch (err) {
      done();
      throw err;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      release();
      done();
    };
  }

  /** How many keys have holders or waiters now. */
  get keys(): number {
    return this.#keys.size;
  }
}
