/**
 * The worker's poll loop: keeps every backend's model places busy, priority
 * lane first, and holds the messages it has taken with a heartbeat.
 *
 * A receive is never cut off: SQS may already have handed it a message, which
 * would then stay hidden for the visibility timeout with nobody to run it. To
 * stop, the worker lets its receives end by themselves (a long poll ends within
 * `POLL_WAIT_S`) and puts back at once whatever they bring.
 */
import { sweepDeadLetters } from "./dead_letters.ts";
import { errorMessage } from "../core/error_message.ts";
import { runJob } from "./job_runner.ts";
import type { Logger } from "../core/log.ts";
import { WorkerMetrics } from "./metrics.ts";
import { OutageTracker, type PauseSchedule } from "./outage.ts";
import { type Lane, LANES, type ReceivedJob } from "../core/queue.ts";
import { Semaphore } from "./semaphore.ts";
import type { Services } from "../core/services.ts";
import { sleep } from "../core/sleep.ts";

/** Options for {@linkcode JobWorker}. */
export interface WorkerOptions {
  logger: Logger;
  /** Pauses after consecutive queue failures; default one second doubling up to 30 s. */
  queuePauses?: PauseSchedule;
}

/** The most messages one receive may ask for (SQS's limit). */
const MAX_BATCH = 10;
/**
 * Jobs held per backend place: while one job waits for the model, others are
 * claimed, read and stored, so no place sits idle on store or queue round trips.
 */
const JOBS_PER_PLACE = 2;
/** How long to pause when idle and long polling is off (POLL_WAIT_S=0). */
const IDLE_PAUSE_MS = 200;

/** A message the worker holds: waiting to start, or running. */
interface Held {
  message: ReceivedJob;
  running: boolean;
}

/** Pulls jobs from the queue and runs them, up to each backend's concurrency, until stopped. */
export class JobWorker {
  #services: Services;
  #logger: Logger;
  #id = crypto.randomUUID();
  #metrics = new WorkerMetrics(this.#id);
  #maxReceiveCount?: Record<Lane, number>;
  #holdLimit: number;
  /** Started runs per backend route: at most its places times JOBS_PER_PLACE. */
  #runsPerRoute = new Map<string, number>();
  /** Places at each backend: only the model call itself takes one. */
  #places = new Map<string, Semaphore>();
  /** Held messages not started yet, priority lane first; each starts when its backend has room. */
  #waiting: ReceivedJob[] = [];
  #held = new Map<string, Held>();
  #running = new Set<Promise<void>>();
  /** Receives in flight: never abandoned, so what they bring is never lost. */
  #receiving = new Set<Promise<unknown>>();
  #idle = false;
  #queueOutage: OutageTracker;
  #storeOutage: OutageTracker;
  /** Aborted to stop receiving. */
  #stopping = new AbortController();
  /** Aborted when the grace period is over: running jobs are handed back. */
  #interrupt = new AbortController();
  #wakeLoop?: () => void;
  #heartbeat?: ReturnType<typeof setInterval>;
  #sweeper?: ReturnType<typeof setInterval>;
  #sweeping?: Promise<void>;
  #loop?: Promise<void>;
  #stopped?: Promise<void>;
  #done = Promise.withResolvers<void>();

  constructor(services: Services, options: WorkerOptions) {
    this.#services = services;
    this.#logger = options.logger;
    this.#holdLimit = services.backends.reduce((sum, b) => sum + b.concurrency * JOBS_PER_PLACE, 0);
    for (const backend of services.backends) {
      this.#places.set(backend.name, new Semaphore(backend.concurrency));
    }
    this.#queueOutage = new OutageTracker({
      logger: this.#logger,
      what: "queue",
      lastingHint:
        "check the queue names, the endpoint and the credentials, then `deno task setup`",
      pauses: options.queuePauses,
    });
    this.#storeOutage = new OutageTracker({
      logger: this.#logger,
      what: "store",
      lastingHint: "check the table names, the endpoint and the credentials",
    });
  }

  /** Checks the queues, records the worker as seen, and starts polling. */
  async start(): Promise<void> {
    this.#maxReceiveCount = await this.#readRedriveLimits();
    await this.#services.store.markWorkerSeen(this.#id);
    this.#publishMetrics();
    const everyMs = Math.max(500, (this.#services.config.visibilityTimeoutSeconds * 1000) / 3);
    this.#heartbeat = setInterval(() => this.#beat(), everyMs);
    this.#sweeper = setInterval(
      () => this.#sweep(),
      this.#services.config.deadLetterSweepSeconds * 1000,
    );
    this.#sweep();
    this.#loop = this.#run();
  }

  /**
   * Stops receiving, lets receives in flight end and puts back what they
   * bring, puts waiting messages back at once, lets running jobs finish within
   * the grace period, then hands the rest back to the queue.
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
    clearInterval(this.#sweeper);
    // Receives in flight end by themselves; #accept puts back what they bring.
    const receivesEnded = this.#loop!.then(() => Promise.allSettled([...this.#receiving]));
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
    await receivesEnded;
    await this.#sweeping;
    clearInterval(this.#heartbeat);
    // The last counts, so the runs since the last heartbeat are not lost.
    await this.#publishMetrics();
    this.#done.resolve();
  }

  async #run(): Promise<void> {
    const signal = this.#stopping.signal;
    while (!signal.aborted) {
      this.#dispatch();
      const room = this.#holdLimit - this.#running.size - this.#waiting.length;
      if (room <= 0) {
        await new Promise<void>((resolve) => this.#wakeLoop = resolve);
        continue;
      }
      try {
        const messages = await this.#receive(Math.min(MAX_BATCH, room), signal);
        this.#queueOutage.succeeded();
        this.#accept(messages);
      } catch (err) {
        // Pauses grow while the queue keeps failing, so an outage never spins the loop.
        await sleep(this.#queueOutage.failed(err), signal);
      }
    }
  }

  /**
   * Up to `max` messages: the priority lane first, then the default lane.
   * When both are empty, long-polls both at once, so a job on either starts
   * without waiting out the other's poll; once idle, only long polls.
   * Throws when the queue fails.
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

  /**
   * Long-polls every lane at once. Answers with the first lane that brings
   * messages; what the others bring later is taken in as well. Answers empty
   * once all are done, or throws the first error when none brought anything.
   */
  #longPollBoth(max: number, wait: number, signal: AbortSignal): Promise<ReceivedJob[]> {
    return new Promise((resolve, reject) => {
      let pending = LANES.length;
      let answered = false;
      let failure: { error: unknown } | undefined;
      const settleIfLast = () => {
        if (--pending > 0 || answered) return;
        answered = true;
        if (failure) reject(failure.error);
        else resolve([]);
      };
      for (const lane of LANES) {
        this.#receiveFrom(lane, max, wait, signal).then(
          (messages) => {
            if (messages.length > 0 && !answered) {
              answered = true;
              resolve(messages);
            } else if (messages.length > 0) {
              // Another lane answered first: these wait to start like any other.
              this.#accept(messages);
            }
            settleIfLast();
          },
          (err) => {
            failure ??= { error: err };
            settleIfLast();
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
    const receive = this.#services.queue.receive(lane, {
      maxMessages: max,
      waitSeconds,
      visibilitySeconds: this.#services.config.visibilityTimeoutSeconds,
      signal,
    });
    this.#receiving.add(receive);
    const forget = () => this.#receiving.delete(receive);
    receive.then(forget, forget);
    return receive;
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
      // A message for no known backend (a line check, or a job the runner gives up) starts at once.
      if (backend && (this.#runsPerRoute.get(route) ?? 0) >= backend.concurrency * JOBS_PER_PLACE) {
        return true;
      }
      this.#start(message);
      return false;
    });
  }

  #start(message: ReceivedJob): void {
    const route = message.ticket.route;
    this.#runsPerRoute.set(route, (this.#runsPerRoute.get(route) ?? 0) + 1);
    const held = this.#held.get(message.receipt);
    if (held) held.running = true;
    const run = runJob(message, {
      services: this.#services,
      logger: this.#logger,
      maxReceiveCount: this.#maxReceiveCount![message.lane],
      signal: this.#interrupt.signal,
      stopHolding: () => this.#held.delete(message.receipt),
      backendPlace: (route) =>
        this.#places.get(route)?.acquire(message.lane === "priority") ?? Promise.resolve(() => {}),
      onRun: (run) => this.#metrics.timeRun(run),
    }).then(
      (outcome) => this.#metrics.countRun(route, outcome),
      (err) => {
        this.#metrics.countRun(route, "error");
        // The message stays hidden until its visibility runs out, then comes back: nothing is lost.
        this.#logger.error("Job run failed before it could settle its message", {
          job_id: message.ticket.job_id,
          error: errorMessage(err),
        });
      },
    ).finally(() => {
      this.#held.delete(message.receipt);
      this.#runsPerRoute.set(route, (this.#runsPerRoute.get(route) ?? 1) - 1);
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
      queue.returnAfter(message, seconds).catch((err) =>
        this.#logger.warn("Heartbeat could not extend a message", {
          job_id: message.ticket.job_id,
          error: errorMessage(err),
        })
      );
      if (running) {
        store.renewLease(message.ticket.job_id, seconds * 1000).catch((err) =>
          this.#logger.warn("Heartbeat could not renew a lease", {
            job_id: message.ticket.job_id,
            error: errorMessage(err),
          })
        );
      }
    }
    store.markWorkerSeen(this.#id).then(
      () => this.#storeOutage.succeeded(),
      (err) => this.#storeOutage.failed(err),
    );
    this.#publishMetrics();
  }

  /** Publishes the worker's counters for `GET /metrics`; a failure costs one heartbeat's worth. */
  #publishMetrics(): Promise<void> {
    return this.#services.store.saveWorkerMetrics(this.#metrics.snapshot()).catch((err) =>
      this.#logger.warn("Could not publish the worker's metrics", { error: errorMessage(err) })
    );
  }

  /** Looks through the dead-letter queues for jobs whose message got there without us; one sweep at a time. */
  #sweep(): void {
    if (this.#sweeping || this.#stopping.signal.aborted) return;
    this.#sweeping = sweepDeadLetters(this.#services, {
      logger: this.#logger,
      maxReceiveCount: this.#maxReceiveCount!,
    }).then(
      () => {},
      (err) =>
        this.#logger.warn("Could not look through the dead-letter queues", {
          error: errorMessage(err),
        }),
    ).finally(() => this.#sweeping = undefined);
  }

  async #putBack(message: ReceivedJob): Promise<void> {
    this.#held.delete(message.receipt);
    await this.#services.queue.returnAfter(message, 0).catch((err) =>
      this.#logger.warn("Could not release a message; it returns after its visibility timeout", {
        job_id: message.ticket.job_id,
        error: errorMessage(err),
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
