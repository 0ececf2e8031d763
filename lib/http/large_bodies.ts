/**
 * A bound on how many large request bodies are read at once. A body is held
 * whole in memory while it is read and parsed (several times its size, with
 * its text, its parsed form and its decoded images): sixteen 8 MB bodies at
 * once once added 330 MB and slowed `/healthz` to 6 s. A body over
 * {@linkcode LARGE_BODY_BYTES} takes one of `MAX_LARGE_BODIES` places while
 * it is read (from its first read when its `Content-Length` says it is large,
 * else from the bytes that make it so) and gives it back when it has been
 * read. It must come before anything that reads bodies (Hono's `bodyLimit`
 * reads a body of unknown length whole before passing it on). A body that finds no place waits for one, unread, and is refused
 * with a 503 when none comes in time (the app gives it half of
 * `BODY_TIMEOUT_S`, leaving the other half for the body to arrive).
 */
import type { MiddlewareHandler } from "hono";
import { ApiError } from "./errors.ts";
import type { GatewayEnv } from "./http_context.ts";

/** Bodies over this many bytes are large. */
export const LARGE_BODY_BYTES = 1_048_576;

/** Options for {@linkcode limitLargeBodies}. */
export interface LargeBodyOptions {
  /** How many large bodies may be read at once. */
  maxBodies: number;
  /** The variable that sets `maxBodies`, named in the refusal. */
  variable: string;
  /** How long a large body waits for a place before it is refused. */
  waitMs: number;
}

/** Reads at most `maxBodies` large POST bodies at once; one that waits too long for a place gets a 503. */
export function limitLargeBodies(options: LargeBodyOptions): MiddlewareHandler<GatewayEnv> {
  const places = new Places(options.maxBodies);
  const busy = () =>
    new ApiError(
      503,
      `Too many large request bodies at once: the gateway reads at most ${options.maxBodies} bod${
        options.maxBodies === 1 ? "y" : "ies"
      } over ${LARGE_BODY_BYTES} bytes at a time (${options.variable}), and no place came free within ${
        options.waitMs / 1000
      } s; try again`,
      { code: "too_many_large_bodies", headers: { "retry-after": "1" } },
    );
  return async function limitLargeBody(c, next) {
    const body = c.req.raw.body;
    if (c.req.method !== "POST" || body === null) return await next();
    let release: (() => void) | undefined;
    const take = async () => {
      release = await places.take(options.waitMs);
      if (!release) throw busy();
    };
    const done = () => release?.();
    // Taken at the first read, not before: a body the next middleware refuses unread needs none.
    const declared = Number(c.req.header("content-length"));
    let read = 0;
    const reader = body.getReader();
    const counted = new ReadableStream<Uint8Array>({
      async pull(controller) {
        try {
          if (declared > LARGE_BODY_BYTES && !release) await take();
          const { done: ended, value } = await reader.read();
          if (ended) {
            done();
            controller.close();
            return;
          }
          read += value.byteLength;
          if (read > LARGE_BODY_BYTES && !release) await take();
          controller.enqueue(value);
        } catch (err) {
          done();
          reader.cancel(err).catch(() => {});
          controller.error(err);
        }
      },
      cancel(reason) {
        done();
        return reader.cancel(reason);
      },
    });
    c.req.raw = new Request(c.req.raw, { body: counted, duplex: "half" } as RequestInit);
    try {
      await next();
    } finally {
      done();
    }
  };
}

/** A fixed number of places; a taker waits for one at most a given time. */
class Places {
  #free: number;
  #waiting: ((release: () => void) => void)[] = [];

  constructor(count: number) {
    this.#free = count;
  }

  /** A place's release function, or undefined when none came free within `waitMs`. */
  take(waitMs: number): Promise<(() => void) | undefined> {
    if (this.#free > 0) {
      this.#free--;
      return Promise.resolve(this.#release());
    }
    return new Promise((resolve) => {
      const handOver = (release: () => void) => {
        clearTimeout(timer);
        resolve(release);
      };
      const timer = setTimeout(() => {
        this.#waiting.splice(this.#waiting.indexOf(handOver), 1);
        resolve(undefined);
      }, waitMs);
      this.#waiting.push(handOver);
    });
  }

  /** Gives the place to the longest waiter, or frees it; a second call does nothing. */
  #release(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiting.shift();
      if (next) next(this.#release());
      else this.#free++;
    };
  }
}
