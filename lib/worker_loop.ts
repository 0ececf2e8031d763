/** The worker's poll loop: takes jobs priority lane first and runs them one at a time. */
import type { Logger } from "./log.ts";
import { type Lane, LANES, type ReceivedJob } from "./queue.ts";
import type { Services } from "./services.ts";
import { runJob } from "./job_runner.ts";

/** Options for {@linkcode JobWorker}. */
export interface WorkerOptions {
  logger: Logger;
  /** Long-poll wait when both lanes are empty; default from the configuration. */
  pollWaitSeconds?: number;
}

/** How long to pause after the queue itself failed, so an outage does not spin the loop. */
const ERROR_PAUSE_MS = 1000;
/** How long to pause when idle and long polling is off (POLL_WAIT_S=0). */
const IDLE_PAUSE_MS = 200;

/** Pulls jobs from the queue and runs them until stopped. */
export class JobWorker {
  #services: Services;
  #logger: Logger;
  #pollWaitSeconds: number;
  #maxReceiveCount?: Record<Lane, number>;
  #stopping = new AbortController();
  #idle = false;
  #loop?: Promise<void>;

  constructor(services: Services, options: WorkerOptions) {
    this.#services = services;
    this.#logger = options.logger;
    this.#pollWaitSeconds = options.pollWaitSeconds ?? services.config.pollWaitSeconds;
  }

  /** Checks the queues and starts polling; resolves once polling has begun. */
  async start(): Promise<void> {
    this.#maxReceiveCount = await this.#readRedriveLimits();
    this.#loop = this.#run();
  }

  /** Stops receiving, waits for the running job to finish, then resolves. */
  async stop(): Promise<void> {
    this.#stopping.abort();
    await this.#loop;
  }

  /** Resolves when the loop has ended (after {@linkcode stop}). */
  get finished(): Promise<void> {
    return this.#loop ?? Promise.resolve();
  }

  async #run(): Promise<void> {
    const signal = this.#stopping.signal;
    while (!signal.aborted) {
      try {
        const message = await this.#next(signal);
        if (message) {
          await runJob(message, {
            services: this.#services,
            logger: this.#logger,
            maxReceiveCount: this.#maxReceiveCount![message.lane],
          });
        }
      } catch (err) {
        if (signal.aborted) break;
        this.#logger.error("Worker poll failed; retrying", { error: (err as Error).message });
        await pause(ERROR_PAUSE_MS, signal);
      }
    }
  }

  /**
   * The next message: the priority lane first, then the default lane, then a
   * long poll of both. Once idle, only long polls, until a message arrives:
   * that halves the empty receives an idle worker pays for.
   */
  async #next(signal: AbortSignal): Promise<ReceivedJob | undefined> {
    if (!this.#idle) {
      for (const lane of LANES) {
        const [message] = await this.#receive(lane, 0, signal);
        if (message) return message;
      }
    }
    if (this.#pollWaitSeconds === 0) {
      await pause(IDLE_PAUSE_MS, signal);
      return undefined;
    }
    const message = await this.#longPollBoth(signal);
    this.#idle = message === undefined;
    return message;
  }

  /**
   * Long-polls both lanes at once so a job on either starts without delay.
   * Whichever lane answers first wins; a message that arrives on the other
   * lane meanwhile is made visible again at once, to be taken in order.
   */
  #longPollBoth(signal: AbortSignal): Promise<ReceivedJob | undefined> {
    return new Promise((resolve) => {
      let pending = LANES.length;
      let taken = false;
      const settle = (message?: ReceivedJob) => {
        if (message && !taken) {
          taken = true;
          resolve(message);
        } else if (message) {
          this.#services.queue.release(message, 0).catch((err) =>
            this.#logger.warn(
              "Could not release a message; it returns after its visibility timeout",
              {
                job_id: message.ticket.job_id,
                error: (err as Error).message,
              },
            )
          );
        }
        if (--pending === 0 && !taken) resolve(undefined);
      };
      for (const lane of LANES) {
        this.#receive(lane, this.#pollWaitSeconds, signal).then(
          ([message]) => settle(message),
          (err) => {
            if (!signal.aborted) {
              this.#logger.error("Long poll failed", { lane, error: (err as Error).message });
            }
            settle(undefined);
          },
        );
      }
    });
  }

  #receive(lane: Lane, waitSeconds: number, signal: AbortSignal): Promise<ReceivedJob[]> {
    return this.#services.queue.receive(lane, {
      maxMessages: 1,
      waitSeconds,
      // Hidden for longer than one backend call can take, so no other worker runs it meanwhile.
      visibilitySeconds: Math.ceil(this.#services.config.llmTimeoutMs / 1000) + 60,
      signal,
    });
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

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}
