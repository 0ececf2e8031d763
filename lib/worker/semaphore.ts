/** A counting semaphore: at most `limit` holders at once; urgent waiters go before the others. */
export class Semaphore {
  #free: number;
  #urgent: (() => void)[] = [];
  #waiting: (() => void)[] = [];

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
  async acquire(urgent = false, signal?: AbortSignal): Promise<() => void> {
    signal?.throwIfAborted();
    if (this.#free > 0) {
      this.#free--;
    } else {
      const line = urgent ? this.#urgent : this.#waiting;
      await new Promise<void>((resolve, reject) => {
        const abort = () => {
          line.splice(line.indexOf(wake), 1);
          reject(signal!.reason);
        };
        const wake = () => {
          signal?.removeEventListener("abort", abort);
          resolve();
        };
        line.push(wake);
        signal?.addEventListener("abort", abort, { once: true });
      });
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#urgent.shift() ?? this.#waiting.shift();
      if (next) next();
      else this.#free++;
    };
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
