/**
 * The worker's poll loops: one per backend it serves, each taking from that
 * backend's two queues (priority lane first) as long as the backend has room,
 * so every backend's model places stay busy. A heartbeat holds the messages
 * taken and publishes what the worker serves (see lib/core/catalogue.ts).
 *
 * Waiting messages start one key at a time, and no key runs more jobs at once
 * than its in-flight limit (lib/worker/key_turns.ts).
 *
 * A receive is never cut off: SQS may already have handed it a message, which
 * would then stay hidden for the visibility timeout with nobody to run it. To
 * stop, the worker lets its receives end by themselves (a long poll ends within
 * `POLL_WAIT_S`) and puts back at once whatever they bring.
 */
import type { Backend } from "../core/backends.ts";
import { BackendRooms, MAX_BATCH, refillBatch } from "./backend_rooms.ts";
import { CallbackDeliveries } from "./callbacks.ts";
import { ImageCache, WORKER_IMAGE_CACHE } from "./image_cache.ts";
import { queueKey, readRedriveLimits, sweepDeadLetters } from "./dead_letters.ts";
import { errorMessage } from "../core/error_message.ts";
import { beatInterval, extendHolds, type Held } from "./holds.ts";
import { runJob } from "./job_runner.ts";
import type { Logger } from "../core/log.ts";
import { longPollAll } from "./long_poll.ts";
import { ModelCatalogue } from "./model_catalogue.ts";
import { WorkerMetrics } from "./metrics.ts";
import { OutageTracker, type PauseSchedule } from "./outage.ts";
import { LANES, type QueueRef, queuesOf, type ReceivedJob } from "../core/queue.ts";
import { KeyedSemaphore } from "./semaphore.ts";
import { type KeyPlace, KeyTurns } from "./key_turns.ts";
import { jobStarted, runEnded, UsageTally } from "./key_usage.ts";
import { WorkerRecordWriter } from "./worker_record.ts";
import type { Services } from "../core/services.ts";
import { sleep } from "../core/sleep.ts";

/** Options for {@linkcode JobWorker}. */
export interface WorkerOptions {
  logger: Logger;
  /** Pauses after consecutive queue failures; default one second doubling up to 30 s. */
  queuePauses?: PauseSchedule;
}

export { capacity, refillBatch } from "./backend_rooms.ts";
export { beatInterval, extensionDue } from "./holds.ts";

/** How long to pause when idle and long polling is off (POLL_WAIT_S=0). */
const IDLE_PAUSE_MS = 200;
/** Time allowed for each request that asks a backend what it serves. */
const MODEL_CHECK_TIMEOUT_MS = 10_000;

/** The receiving side of one backend the worker serves. */
interface Poller {
  backend: Backend;
  /** Set after a long poll brought nothing: the next receive is a long poll too. */
  idle: boolean;
  /** Resolves the wait of a loop whose backend has no room. */
  wake?: () => void;
  loop?: Promise<void>;
}

/** Pulls jobs from its backends' queues and runs them, up to each backend's concurrency, until stopped. */
export class JobWorker {
  #services: Services;
  #logger: Logger;
  #id = crypto.randomUUID();
  /** What became of its runs, published with its record for `GET /metrics`. */
  #metrics = new WorkerMetrics();
  /** Deliveries before each queue dead-letters a message, by queue. */
  #maxReceiveCount = new Map<string, number>();
  #pollers: Poller[];
  /** What each backend's started runs take of its room, and its model places. */
  #rooms: BackendRooms;
  /** Images each API key's jobs are fetching at once. */
  #imageFetches: KeyedSemaphore;
  /** Held messages not started yet; each starts, in {@linkcode KeyTurns}' order, when its backend has room. */
  #waiting: ReceivedJob[] = [];
  /** Whose job starts next, and each key's share of its in-flight limit. */
  #turns: KeyTurns;
  #held = new Map<string, Held>();
  #running = new Set<Promise<void>>();
  /** Callback deliveries: outside the runs, so they hold no backend place, and awaited on stop. */
  #callbacks: CallbackDeliveries;
  /** Images of earlier turns, so a conversation's images are not fetched on every turn. */
  #imageCache = new ImageCache(WORKER_IMAGE_CACHE);
  #usage: UsageTally;
  /** When the receive that brought each message was sent. */
  #receivedAt = new WeakMap<ReceivedJob, number>();
  /** Receives in flight: never abandoned, so what they bring is never lost. */
  #receiving = new Set<Promise<unknown>>();
  #catalogue: ModelCatalogue;
  #queueOutage: OutageTracker;
  /** Until when every loop pauses after a failed receive: one outage, one pause, however many loops. */
  #queuePausedUntil = 0;
  #storeOutage: OutageTracker;
  /** Aborted to stop receiving. */
  #stopping = new AbortController();
  /** Aborted when the grace period is over: running jobs are handed back. */
  #interrupt = new AbortController();
  #beatEveryMs: number;
  #heartbeat?: ReturnType<typeof setInterval>;
  /** The sweep of dead letters, and the refresh and retry of the backends' models. */
  #intervals: ReturnType<typeof setInterval>[] = [];
  #sweeping?: Promise<void>;
  /** Its record in the store: what it serves, and its counters. */
  #record: WorkerRecordWriter;
  #stopped?: Promise<void>;
  #done = Promise.withResolvers<void>();

  constructor(services: Services, options: WorkerOptions) {
    this.#services = services;
    this.#logger = options.logger;
    this.#pollers = services.backends.map((backend) => ({ backend, idle: false }));
    this.#callbacks = new CallbackDeliveries({ services, logger: this.#logger });
    this.#usage = new UsageTally(services.counters, this.#logger);
    const startMore = () => {
      this.#dispatch();
      this.#wakeAll();
    };
    this.#rooms = new BackendRooms(services.backends, { onRoom: startMore });
    this.#imageFetches = new KeyedSemaphore(services.config.imageFetchesPerKey);
    this.#turns = new KeyTurns({
      counters: services.counters,
      queue: services.queue,
      logger: this.#logger,
      graceMs: 2 * services.config.visibilityTimeoutSeconds * 1000,
      onRecheck: startMore,
    });
    this.#beatEveryMs = beatInterval(services.config.visibilityTimeoutSeconds);
    this.#catalogue = new ModelCatalogue(services.backends, {
      logger: this.#logger,
      timeoutMs: MODEL_CHECK_TIMEOUT_MS,
    });
    this.#record = new WorkerRecordWriter({
      id: this.#id,
      services,
      logger: this.#logger,
      catalogue: this.#catalogue,
      metrics: this.#metrics,
      beatEveryMs: this.#beatEveryMs,
      stopping: this.#stopping.signal,
    });
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

  /** This worker's id, under which it publishes what it serves. */
  get id(): string {
    return this.#id;
  }

  /**
   * Checks its backends' settings and queues, asks the backends what they
   * serve, publishes that, and starts polling.
   */
  async start(): Promise<void> {
    const { backends, config } = this.#services;
    if (backends.length === 0) throw new Error("Cannot start worker: LLM_BACKENDS names none");
    for (const backend of backends) {
      if (!backend.baseUrl) {
        throw new Error(
          `Cannot start worker: backend "${backend.name}" has no base URL; set ${backend.baseUrlVariable}`,
        );
      }
    }
    this.#maxReceiveCount = await readRedriveLimits(this.#services);
    await this.#catalogue.refresh();
    await this.#record.publish();
    this.#heartbeat = setInterval(() => this.#beat(), this.#beatEveryMs);
    this.#intervals = [
      setInterval(() => this.#sweep(), config.deadLetterSweepSeconds * 1000),
      setInterval(() => this.#record.refresh(), config.modelRefreshSeconds * 1000),
      setInterval(() => this.#record.retryDown(), config.modelRetrySeconds * 1000),
    ];
    this.#sweep();
    for (const poller of this.#pollers) poller.loop = this.#run(poller);
  }

  /**
   * Stops receiving, lets receives in flight end and puts back what they
   * bring, puts waiting messages back at once, lets running jobs finish within
   * the grace period, then hands the rest back to the queue.
   */
  stop(): Promise<void> {
    return this.#stopped ??= this.#shutdown();
  }

  /** Resolves when the worker has fully stopped: after {@linkcode stop}, once its jobs are settled. */
  get finished(): Promise<void> {
    return this.#done.promise;
  }

  async #shutdown(): Promise<void> {
    this.#stopping.abort();
    this.#wakeAll();
    this.#intervals.forEach(clearInterval);
    this.#turns.close();
    // Its models leave the catalogue at once; jobs for them wait in their queues.
    const leaving = this.#record.publish().catch(() => {});
    // Receives in flight end by themselves; #accept puts back what they bring.
    const receivesEnded = Promise.all(this.#pollers.map((p) => p.loop))
      .then(() => Promise.allSettled([...this.#receiving]));
    const waiting = this.#waiting.splice(0);
    await Promise.all(waiting.map((m) => this.#putBack(m)));
    const grace = this.#services.config.shutdownGraceMs;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const graceEnds = new Promise<void>((resolve) => timer = setTimeout(resolve, grace));
    if (this.#running.size > 0) {
      this.#logger.info("Waiting for running jobs", {
        running: this.#running.size,
        grace_ms: grace,
      });
      await Promise.race([Promise.allSettled([...this.#running]), graceEnds]);
      if (this.#running.size > 0) {
        this.#logger.warn("Grace period over; handing running jobs back", {
          running: this.#running.size,
        });
        this.#interrupt.abort();
        await Promise.allSettled([...this.#running]);
      }
    }
    await this.#usage.flush(); // first of what remains: a stop cut short keeps the usage
    // Jobs that finished during the grace period may have added deliveries; they share its end.
    await this.#callbacks.drain(graceEnds);
    clearTimeout(timer);
    await receivesEnded;
    await this.#sweeping;
    await leaving;
    clearInterval(this.#heartbeat);
    // Once more with the last counts, so the runs since the last heartbeat are not lost.
    await this.#record.publish().catch((err) =>
      this.#logger.warn("Could not publish the worker's last counts", {
        error: errorMessage(err),
      })
    );
    this.#done.resolve();
  }

  /**
   * One backend's loop: receives while the backend has room for a batch, and
   * never spins. A busy worker so makes one receive per batch of jobs, not one
   * per job that ends, while its spare jobs keep the places busy meanwhile.
   */
  async #run(poller: Poller): Promise<void> {
    const signal = this.#stopping.signal;
    while (!signal.aborted) {
      this.#dispatch();
      const room = this.#room(poller.backend);
      if (room < refillBatch(poller.backend)) {
        await new Promise<void>((resolve) => poller.wake = resolve);
        poller.wake = undefined;
        continue;
      }
      const paused = this.#queuePausedUntil - Date.now();
      if (paused > 0) {
        await sleep(paused, signal);
        continue;
      }
      try {
        const messages = await this.#receive(poller, Math.min(MAX_BATCH, room), signal);
        this.#queueOutage.succeeded();
        this.#accept(messages);
      } catch (err) {
        // Pauses grow while the queue keeps failing, so an outage never spins the loops;
        // loops that fail together count as one failure.
        if (Date.now() >= this.#queuePausedUntil) {
          this.#queuePausedUntil = Date.now() + this.#queueOutage.failed(err);
        }
      }
    }
  }

  /**
   * How many more messages a backend's loop may hold: its held messages count
   * against it, except those waiting for their key, which hold no place.
   */
  #room(backend: Backend): number {
    const waiting =
      this.#waiting.filter((m) => m.backend === backend.name && !this.#turns.mustWait(m)).length;
    return this.#rooms.room(backend, waiting);
  }

  /**
   * Up to `max` messages of one backend: its priority lane first, then its
   * default lane. When both are empty, long-polls both at once, so a job on
   * either starts without waiting out the other's poll; once idle, only long
   * polls. Throws when the queue fails.
   */
  async #receive(poller: Poller, max: number, signal: AbortSignal): Promise<ReceivedJob[]> {
    const queues = LANES.map((lane) => ({ backend: poller.backend.name, lane }));
    if (!poller.idle) {
      const got: ReceivedJob[] = [];
      for (const queue of queues) {
        if (got.length < max) {
          got.push(...await this.#receiveFrom(queue, max - got.length, 0, signal));
        }
      }
      if (got.length > 0) return got;
    }
    const wait = this.#services.config.pollWaitSeconds;
    if (wait === 0) {
      await sleep(IDLE_PAUSE_MS, signal);
      return [];
    }
    const got = await longPollAll(queues, {
      receive: (queue) => this.#receiveFrom(queue, max, wait, signal),
      // Another queue answered first: these wait to start like any other.
      late: (messages) => this.#accept(messages),
    });
    poller.idle = got.length === 0;
    return got;
  }

  #receiveFrom(
    queue: QueueRef,
    max: number,
    waitSeconds: number,
    signal: AbortSignal,
  ): Promise<ReceivedJob[]> {
    // The queue hides what it hands over from some moment during the call: counting
    // from its start errs on the safe side for the heartbeat.
    const sentAt = Date.now();
    const receive = this.#services.queue.receive(queue, {
      maxMessages: max,
      waitSeconds,
      visibilitySeconds: this.#services.config.visibilityTimeoutSeconds,
      signal,
    }).then((messages) => {
      for (const message of messages) this.#receivedAt.set(message, sentAt);
      return messages;
    });
    this.#receiving.add(receive);
    const forget = () => this.#receiving.delete(receive);
    receive.then(forget, forget);
    return receive;
  }

  /** Takes received messages into the waiting list, priority lane first, and starts what fits. */
  #accept(messages: ReceivedJob[]): void {
    if (messages.length === 0) return;
    for (const poller of this.#pollers) {
      if (messages.some((m) => m.backend === poller.backend.name)) poller.idle = false;
    }
    if (this.#stopping.signal.aborted) {
      for (const message of messages) this.#putBack(message);
      return;
    }
    for (const message of messages) {
      const hiddenSince = this.#receivedAt.get(message) ?? Date.now();
      this.#held.set(message.receipt, { message, hiddenSince });
    }
    this.#waiting.push(...messages);
    this.#dispatch();
  }

  /**
   * Starts every waiting message whose backend can hold another job and whose
   * key may run another, in {@linkcode KeyTurns}' order; puts back for a while
   * what a waiting key has more of than it needs to hand.
   */
  #dispatch(): void {
    if (this.#stopping.signal.aborted) return;
    this.#waiting = this.#turns.order(this.#waiting).filter((message) => {
      const backend = this.#services.backends.find((b) => b.name === message.backend);
      // A line check never calls a model: it starts at once.
      const full = backend && !message.ticket.line_check && this.#rooms.isFull(backend);
      if (full || this.#turns.mustWait(message)) return true;
      this.#start(message);
      return false;
    });
    this.#waiting = this.#turns.putBackSurplus(
      this.#waiting,
      (message) => this.#held.delete(message.receipt),
    );
  }

  /** Starts a message's run once its key has a place for it; a key without one sends it back to wait. */
  #start(message: ReceivedJob): void {
    // A run counts against its backend's room until its model call is over: then
    // it only stores and hands on, and another job is claimed and read meanwhile.
    const room = this.#rooms.enter(message.backend);
    const run = this.#turns.begin(message).then((place) => {
      if (place) return this.#runStarted(message, room, place);
      // No place for its key: it waits again, or goes back if the worker is stopping.
      if (!this.#stopping.signal.aborted) this.#waiting.push(message);
      room.leave();
      if (this.#stopping.signal.aborted) return this.#putBack(message);
    }).finally(() => this.#running.delete(run));
    this.#running.add(run);
  }

  #runStarted(
    message: ReceivedJob,
    room: ReturnType<BackendRooms["enter"]>,
    place: KeyPlace,
  ): Promise<void> {
    const key = message.backend;
    let ms: number | undefined;
    let counted: Promise<void> | undefined;
    return runJob(message, {
      services: this.#services,
      logger: this.#logger,
      maxReceiveCount: this.#maxReceiveCount.get(queueKey(message))!,
      signal: this.#interrupt.signal,
      stopHolding: () => this.#held.delete(message.receipt),
      // Only a lease the run holds is renewed: one a dead run left is waited out, not kept alive.
      onClaimed: () => {
        const held = this.#held.get(message.receipt);
        if (held) held.leasedSince = Date.now();
      },
      backendPlace: (route) =>
        room.place(route, { urgent: message.lane === "priority", key: message.ticket.owner }),
      fetchingImages: (work) => room.fetchingImages(work),
      imageFetches: this.#imageFetches,
      catalogue: this.#catalogue,
      deliverCallback: (job) => this.#callbacks.deliver(job),
      imageCache: this.#imageCache,
      onStart: (job) => jobStarted(this.#services, this.#logger, job),
      onRun: (run) => {
        ms = run.ms;
        this.#metrics.runEnded(run);
        counted = runEnded(this.#services, this.#logger, this.#usage, run);
      },
    }).then(
      (outcome) => {
        this.#metrics.countRun(key, outcome);
        if (outcome === "succeeded") this.#record.answered(key);
      },
      (err) => {
        this.#metrics.countRun(key, "error");
        // The message stays hidden until its visibility runs out, then comes back: nothing is lost.
        this.#logger.error("Job run failed before it could settle its message", {
          job_id: message.ticket.job_id,
          error: errorMessage(err),
        });
      },
    ).finally(async () => {
      this.#held.delete(message.receipt);
      // The key's place first, so the room given back finds the key free to start another.
      await this.#turns.end(message, place, ms);
      room.leave();
      // The usage write goes on outside the room; the worker stops only once it is done.
      await counted;
    });
  }

  #wakeAll(): void {
    for (const poller of this.#pollers) poller.wake?.();
  }

  /**
   * Keeps held messages hidden and running jobs leased, and publishes what the
   * worker serves. Only holds that have gone half a beat without are extended
   * (see {@linkcode extensionDue}): a short job costs no heartbeat calls.
   */
  #beat(): void {
    extendHolds(this.#held.values(), {
      services: this.#services,
      logger: this.#logger,
      beatEveryMs: this.#beatEveryMs,
    });
    this.#record.publish().then(
      () => this.#storeOutage.succeeded(),
      (err) => this.#storeOutage.failed(err),
    );
  }

  /** Looks through the dead-letter queues for jobs whose message got there without us; one sweep at a time. */
  #sweep(): void {
    if (this.#sweeping || this.#stopping.signal.aborted) return;
    this.#sweeping = sweepDeadLetters(this.#services, {
      logger: this.#logger,
      queues: queuesOf(this.#services.backends.map((b) => b.name)),
      maxReceiveCount: (queue) => this.#maxReceiveCount.get(queueKey(queue))!,
    }).then(() => {}).catch((err) =>
      this.#logger.warn("Could not look through the dead-letter queues", {
        error: errorMessage(err),
      })
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
}
