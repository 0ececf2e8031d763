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

  /** Waits for a place and returns the function that gives it back (calling it again does nothing). */
  async acquire(urgent = false): Promise<() => void> {
    if (this.#free > 0) {
      this.#free--;
    } else {
      await new Promise<void>((resolve) => (urgent ? this.#urgent : this.#waiting).push(resolve));
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
