/**
 * A real queue seen through a window: every call goes to the queue under test,
 * and the window records what receives returned or makes the first receives
 * fail, as a queue does when its endpoint is unreachable.
 */
import type { JobTicket } from "../../lib/core/jobs.ts";
import type {
  DeadLetterOptions,
  JobQueue,
  Lane,
  QueueDepth,
  QueueRef,
  ReceivedJob,
  ReceiveOptions,
  RedriveResult,
  SendOptions,
} from "../../lib/core/queue.ts";

/** One receive as the window saw it. */
export interface ObservedReceive {
  backend: string;
  lane: Lane;
  waitSeconds: number;
  /** Epoch ms when it was asked for. */
  at: number;
  /** Job ids it returned; undefined while it runs, or when it failed. */
  jobIds?: string[];
  /** The tickets it returned, line checks among them. */
  tickets?: JobTicket[];
  /** Set when it failed. */
  failed?: true;
}

/** Options for {@linkcode ObservedQueue}. */
export interface ObservedQueueOptions {
  /** How many receives fail before they go through. Default 0. */
  failingReceives?: number;
  /** The error a failing receive throws. */
  failure?: () => Error;
}

/** A {@linkcode JobQueue} that passes everything to `inner` and records each receive and send. */
export class ObservedQueue implements JobQueue {
  readonly receives: ObservedReceive[] = [];
  /** Every ticket sent through it, line checks among them. */
  readonly sent: JobTicket[] = [];
  #inner: JobQueue;
  #failuresLeft: number;
  #failure: () => Error;

  constructor(inner: JobQueue, options: ObservedQueueOptions = {}) {
    this.#inner = inner;
    this.#failuresLeft = options.failingReceives ?? 0;
    this.#failure = options.failure ??
      (() => new TypeError("error sending request: Connection refused (os error 111)"));
  }

  async receive(queue: QueueRef, options: ReceiveOptions): Promise<ReceivedJob[]> {
    const seen: ObservedReceive = { ...queue, waitSeconds: options.waitSeconds, at: Date.now() };
    this.receives.push(seen);
    if (this.#failuresLeft > 0) {
      this.#failuresLeft--;
      seen.failed = true;
      throw this.#failure();
    }
    const got = await this.#inner.receive(queue, options);
    seen.jobIds = got.map((m) => m.ticket.job_id);
    seen.tickets = got.map((m) => m.ticket);
    return got;
  }

  send(lane: Lane, ticket: JobTicket, options?: SendOptions): Promise<void> {
    this.sent.push(ticket);
    return this.#inner.send(lane, ticket, options);
  }

  /** The job messages (not line checks) its receives returned. */
  deliveries(): JobTicket[] {
    return this.receives.flatMap((r) => r.tickets ?? []).filter((t) => !t.line_check);
  }
  delete(message: ReceivedJob): Promise<void> {
    return this.#inner.delete(message);
  }
  returnAfter(message: ReceivedJob, seconds: number): Promise<void> {
    return this.#inner.returnAfter(message, seconds);
  }
  deadLetter(message: ReceivedJob): Promise<void> {
    return this.#inner.deadLetter(message);
  }
  defer(message: ReceivedJob, seconds: number): Promise<void> {
    return this.#inner.defer(message, seconds);
  }
  maxReceiveCount(queue: QueueRef): Promise<number | undefined> {
    return this.#inner.maxReceiveCount(queue);
  }
  depth(queue: QueueRef): Promise<QueueDepth> {
    return this.#inner.depth(queue);
  }
  receiveDeadLetters(queue: QueueRef, options: DeadLetterOptions): Promise<JobTicket[]> {
    return this.#inner.receiveDeadLetters(queue, options);
  }
  redriveDeadLetters(queue: QueueRef): Promise<RedriveResult> {
    return this.#inner.redriveDeadLetters(queue);
  }
}
