/**
 * The worker's poll loop: keeps every backend's slots full, priority lane
 * first, and holds the messages it has taken with a heartbeat.
 */
import type { Logger } from "./log.ts";
import { type Lane, LANES, type ReceivedJob } from "./queue.ts";
import type { Services } from "./services.ts";
import { runJob } from "./job_runner.ts";
import { Semaphore } from "./semaphore.ts";
import { sleep } from "./sleep.ts";

/** Options for {@linkcode JobWorker}. */
export interface WorkerOptions {
  logger: Logger;
}

/** The most messages one receive may ask for (SQS's limit). */
const MAX_BATCH = 10;
/**
 * Jobs held per backend place: while one job waits for the model, others are
 * claimed, read and stored, so no place sits idle on store or queue round trips.
 */
const JOBS_PER_PLACE = 2;
/** How long to pause after the queue itself failed, so an outage does not spin the loop. */
const ERROR_PAUSE_MS = 1000;
/** How long to pause when idle and long polling is off (POLL_WAIT_S=0). */
const IDLE_PAUSE_MS = 200;

/** A message the worker holds: waiting for a slot, or running. */
interface Held {
  message: ReceivedJob;
  running: boolean;
}

/** Pulls jobs from the queue and runs them, up to each backend's concurrency, until stopped. */
export class JobWorker {
  #services: Services;
  #logger: Logger;
  #id = crypto.randomUUID();
  #maxReceiveCount?: Record<Lane, number>;
  #capacity: number;
  /** Running jobs per backend route. */
  #busy = new Map<string, number>();
  /** Places at each backend: only the model call itself takes one. */
  #places = new Map<string, Semaphore>();
  /** Received messages waiting for a slot, priority lane first. */
  #waiting: ReceivedJob[] = [];
  #held = new Map<string, Held>();
  #running = new Set<Promise<void>>();
  #idle = false;
  /** Aborted to stop receiving. */
  #stopping = new AbortController();
  /** Aborted when the grace period is over: running jobs are handed back. */
  #interrupt = new AbortController();
  #wakeLoop?: () => void;
  #heartbeat?: ReturnType<typeof setInterval>;
  #loop?: Promise<void>;
  #stopped?: Promise<void>;
  #done = Promise.withResolvers<void>();

  constructor(services: Services, options: WorkerOptions) {
    this.#services = services;
    this.#logger = options.logger;
    this.#capacity = services.backends.reduce((sum, b) => sum + b.concurrency * JOBS_PER_PLACE, 0);
    for (const backend of services.backends) {
      this.#places.set(backend.name, new Semaphore(backend.concurrency));
    }
  }

  /** Checks the queues, records the worker as seen, and starts polling. */
  async start(): Promise<void> {
    this.#maxReceiveCount = await this.#readRedriveLimits();
    await this.#services.store.markWorkerSeen(this.#id);
    const everyMs = Math.max(500, (this.#services.config.visibilityTimeoutSeconds * 1000) / 3);
    this.#heartbeat = setInterval(() => this.#beat(), everyMs);
    this.#loop = this.#run();
  }

  /**
   * Stops receiving, puts waiting messages back at once, lets running jobs
   * finish within the grace period, then hands the rest back to the queue.
   */
  stop(): Promise<void> {
    this.#stopped ??= this.#shutdown();
    return this.#stopped;
  }

  /** Resolves when the worker has fully stopped: after {@linkcode stop}, once its jobs are settled. */
  get finished(): Promise<void> {
    return this.#done.promise;
  }

  async #shutdown(): Promise<void> {
    this.#stopping.abort();
    this.#wakeLoop?.();
    await this.#loop;
    const waiting = this.#waiting.splice(0);
    await Promise.all(waiting.map((m) => this.#putBack(m)));
    if (this.#running.size > 0) {
      const grace = this.#services.config.shutdownGraceMs;
      this.#logger.info("Waiting for running jobs", {
        running: this.#running.size,
        grace_ms: grace,
      });
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.allSettled([...this.#running]),
        new Promise((resolve) => timer = setTimeout(resolve, grace)),
      ]);
      clearTimeout(timer);
      if (this.#running.size > 0) {
        this.#logger.warn("Grace period over; handing running jobs back", {
          running: this.#running.size,
        });
        this.#interrupt.abort();
        await Promise.allSettled([...this.#running]);
      }
    }
    clearInterval(this.#heartbeat);
    this.#done.resolve();
  }

  async #run(): Promise<void> {
    const signal = this.#stopping.signal;
    while (!signal.aborted) {
      this.#dispatch();
      const room = this.#capacity - this.#running.size - this.#waiting.length;
      if (room <= 0) {
        await new Promise<void>((resolve) => this.#wakeLoop = resolve);
        continue;
      }
      try {
        this.#accept(await this.#receive(Math.min(MAX_BATCH, room), signal));
      } catch (err) {
        if (signal.aborted) break;
        this.#logger.error("Worker poll failed; retrying", { error: (err as Error).message });
        await sleep(ERROR_PAUSE_MS, signal);
      }
    }
  }

  /**
   * Up to `max` messages: the priority lane first, then the default lane.
   * When both are empty, long-polls both at once, so a job on either starts
   * without waiting out the other's poll; once idle, only long polls.
   */
  async #receive(max: number, signal: AbortSignal): Promise<ReceivedJob[]> {
    if (!this.#idle) {
      const got: ReceivedJob[] = [];
      for (const lane of LANES) {
        if (got.length < max) {
          got.push(...await this.#receiveFrom(lane, max - got.length, 0, signal));
        }
      }
      if (got.length > 0) return got;
    }
    const wait = this.#services.config.pollWaitSeconds;
    if (wait === 0) {
      await sleep(IDLE_PAUSE_MS, signal);
      return [];
    }
    const got = await this.#longPollBoth(max, wait, signal);
    this.#idle = got.length === 0;
    return got;
  }

  #longPollBoth(max: number, wait: number, signal: AbortSignal): Promise<ReceivedJob[]> {
    return new Promise((resolve) => {
      let pending = LANES.length;
      let answered = false;
      for (const lane of LANES) {
        this.#receiveFrom(lane, max, wait, signal).then(
          (messages) => {
            pending--;
            if (messages.length > 0 && !answered) {
              answered = true;
              resolve(messages);
            } else if (messages.length > 0) {
              // The other lane answered first: these wait for a slot like any other.
              this.#accept(messages);
            } else if (pending === 0 && !answered) {
              resolve([]);
            }
          },
          (err) => {
            pending--;
            if (!signal.aborted) {
              this.#logger.error("Long poll failed", { lane, error: (err as Error).message });
            }
            if (pending === 0 && !answered) resolve([]);
          },
        );
      }
    });
  }

  #receiveFrom(
    lane: Lane,
    max: number,
    waitSeconds: number,
    signal: AbortSignal,
  ): Promise<ReceivedJob[]> {
    return this.#services.queue.receive(lane, {
      maxMessages: max,
      waitSeconds,
      visibilitySeconds: this.#services.config.visibilityTimeoutSeconds,
      signal,
    });
  }

  /** Takes received messages into the waiting list, priority lane first, and starts what fits. */
  #accept(messages: ReceivedJob[]): void {
    if (messages.length === 0) return;
    this.#idle = false;
    if (this.#stopping.signal.aborted) {
      for (const message of messages) this.#putBack(message);
      return;
    }
    for (const message of messages) this.#held.set(message.receipt, { message, running: false });
    this.#waiting.push(...messages);
    this.#waiting.sort((a, b) => LANES.indexOf(a.lane) - LANES.indexOf(b.lane));
    this.#dispatch();
  }

  /** Starts every waiting message whose backend can hold another job, in order. */
  #dispatch(): void {
    if (this.#stopping.signal.aborted) return;
    this.#waiting = this.#waiting.filter((message) => {
      const route = message.ticket.route;
      const backend = this.#services.backends.find((b) => b.name === route);
      // A message for no known backend starts at once: the runner gives it up with its reason.
      if (backend && (this.#busy.get(route) ?? 0) >= backend.concurrency * JOBS_PER_PLACE) {
        return true;
      }
      this.#start(message);
      return false;
    });
  }

  #start(message: ReceivedJob): void {
    const route = message.ticket.route;
    this.#busy.set(route, (this.#busy.get(route) ?? 0) + 1);
    const held = this.#held.get(message.receipt);
    if (held) held.running = true;
    const run = runJob(message, {
      services: this.#services,
      logger: this.#logger,
      maxReceiveCount: this.#maxReceiveCount![message.lane],
      signal: this.#interrupt.signal,
      beforeSettle: () => this.#held.delete(message.receipt),
      backendPlace: (route) =>
        this.#places.get(route)?.acquire(message.lane === "priority") ?? Promise.resolve(() => {}),
    }).then(
      () => {},
      (err) =>
        // The message stays hidden until its visibility runs out, then comes back: nothing is lost.
        this.#logger.error("Job run failed before it could settle its message", {
          job_id: message.ticket.job_id,
          error: (err as Error).message,
        }),
    ).finally(() => {
      this.#held.delete(message.receipt);
      this.#busy.set(route, (this.#busy.get(route) ?? 1) - 1);
      this.#running.delete(run);
      this.#dispatch();
      this.#wakeLoop?.();
    });
    this.#running.add(run);
  }

  /** Keeps held messages hidden and running jobs leased, and says the worker is alive. */
  #beat(): void {
    const { queue, store, config } = this.#services;
    const seconds = config.visibilityTimeoutSeconds;
    for (const { message, running } of this.#held.values()) {
      queue.release(message, seconds).catch((err) =>
        this.#logger.warn("Heartbeat could not extend a message", {
          job_id: message.ticket.job_id,
          error: (err as Error).message,
        })
      );
      if (running) {
        store.renewLease(message.ticket.job_id, seconds * 1000).catch((err) =>
          this.#logger.warn("Heartbeat could not renew a lease", {
            job_id: message.ticket.job_id,
            error: (err as Error).message,
          })
        );
      }
    }
    store.markWorkerSeen(this.#id).catch((err) =>
      this.#logger.warn("Heartbeat could not record the worker", { error: (err as Error).message })
    );
  }

  async #putBack(message: ReceivedJob): Promise<void> {
    this.#held.delete(message.receipt);
    await this.#services.queue.release(message, 0).catch((err) =>
      this.#logger.warn("Could not release a message; it returns after its visibility timeout", {
        job_id: message.ticket.job_id,
        error: (err as Error).message,
      })
    );
  }

  async #readRedriveLimits(): Promise<Record<Lane, number>> {
    const limits = {} as Record<Lane, number>;
    for (const lane of LANES) {
      const limit = await this.#services.queue.maxReceiveCount(lane);
      if (limit === undefined) {
        throw new Error(
          `Cannot start worker: the ${lane} queue has no dead-letter queue, so failed jobs would be retried forever; run \`deno task setup\``,
        );
      }
      limits[lane] = limit;
    }
    return limits;
  }
}
