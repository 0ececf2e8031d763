/**
 * What the gateway needs from a job queue, whichever queue backs it. Each LLM
 * backend has its own pair of lanes, so a job only reaches the workers that
 * serve its backend.
 */
import type { Config } from "./config.ts";
import type { JobTicket, Priority } from "./jobs.ts";

/** The two lanes of a backend: its priority queue is always drained first. */
export type Lane = "priority" | "default";

/** One queue: a backend's lane. */
export interface QueueRef {
  /** The backend's name (`Backend.name`, a ticket's `route`). */
  backend: string;
  lane: Lane;
}

/** Lanes in the order the worker takes from them. */
export const LANES: readonly Lane[] = ["priority", "default"];

/** The lane a job of a given priority goes to. */
export function laneFor(priority: Priority): Lane {
  return priority === "high" ? "priority" : "default";
}

/**
 * The name (or URL) of a backend's queue in a lane: the lane's base name with
 * `-<backend>` added, before `.fifo` if there is one. Every process derives it
 * the same way, so a worker can hand a conversation's turn to a job of a
 * backend it does not serve.
 */
export function queueNameFor(base: string, backend: string): string {
  const trimmed = base.replace(/\/+$/, "");
  return trimmed.endsWith(".fifo")
    ? `${trimmed.slice(0, -5)}-${backend}.fifo`
    : `${trimmed}-${backend}`;
}

/** The names of every configured backend's queues (without their dead-letter queues), priority first. */
export function backendQueueNames(config: Config): string[] {
  return [config.priorityQueue, config.jobsQueue].flatMap((base) =>
    config.llmBackends.map((b) => queueName(queueNameFor(base, b.name)))
  );
}

/** The queue name in a queue name or URL. */
function queueName(nameOrUrl: string): string {
  return nameOrUrl.replace(/\/+$/, "").split("/").pop() ?? nameOrUrl;
}

/** Every queue of the given backends, priority lanes first. */
export function queuesOf(backends: readonly string[]): QueueRef[] {
  return LANES.flatMap((lane) => backends.map((backend) => ({ backend, lane })));
}

/** A message taken from a queue, hidden from other workers until deleted or released. */
export interface ReceivedJob {
  /** The backend whose queue it came from. */
  backend: string;
  lane: Lane;
  ticket: JobTicket;
  /** How many times this message has been delivered, this time included. */
  receiveCount: number;
  /** Opaque handle for delete and visibility changes. */
  receipt: string;
}

/** Options for {@linkcode JobQueue.send}. */
export interface SendOptions {
  /** Keeps the message hidden this long before its first delivery (SQS allows up to 900). */
  delaySeconds?: number;
}

/** Options for {@linkcode JobQueue.receive}. */
export interface ReceiveOptions {
  maxMessages: number;
  /** Long-poll for up to this many seconds when the queue is empty; 0 returns at once. */
  waitSeconds: number;
  /** How long received messages stay hidden. */
  visibilitySeconds: number;
  /**
   * Ends the wait early, where that can lose nothing. SQS hands messages to a
   * receive whose client went away and hides them for the visibility timeout,
   * so the SQS queue ignores it and its receive always runs to the end; the
   * caller must take what it returns and put back what it cannot run.
   */
  signal?: AbortSignal;
}

/** Options for {@linkcode JobQueue.receiveDeadLetters}. */
export interface DeadLetterOptions {
  maxMessages: number;
  /** How long the messages returned stay out of the next calls' answers, so calls page through. */
  hideSeconds: number;
}

/** How many messages a queue holds. */
export interface QueueDepth {
  /** Ready to be received. */
  waiting: number;
  /** Received and not yet deleted, or waiting out a retry delay. */
  in_flight: number;
  /** In the queue's dead-letter queue. */
  dead: number;
}

/** How a queue's dead letters were moved back to it. */
export interface RedriveResult {
  /**
   * "move_task": SQS's own message move task, which goes on after the call;
   * "copy": received, sent again and deleted, one batch at a time (Moto, which
   * lacks move tasks, and any SQS that refuses one); "dead_lane": the
   * embedded queue's dead-letter lane.
   */
  method: "move_task" | "copy" | "dead_lane";
  /** Messages moved by this call; unknown for a move task, which runs on its own. */
  moved?: number;
  /** The move task's handle. */
  task?: string;
  /** Messages in the dead-letter queue when the call ended: held by a reader, or dead again already. */
  left?: number;
}

/** Two lanes per backend, with at-least-once delivery. */
export interface JobQueue {
  /** Sends a ticket to the lane of its backend (`ticket.route`). */
  send(lane: Lane, ticket: JobTicket, options?: SendOptions): Promise<void>;
  receive(queue: QueueRef, options: ReceiveOptions): Promise<ReceivedJob[]>;
  /** Removes a message for good: only after its job is done. */
  delete(message: ReceivedJob): Promise<void>;
  /**
   * Hides a message for `seconds` from now, after which it returns to its
   * queue: 0 puts it back at once, a retry delay schedules another attempt, and
   * the heartbeat keeps a held message hidden this way.
   */
  returnAfter(message: ReceivedJob, seconds: number): Promise<void>;
  /**
   * Puts a message back unrun, to be delivered again after `seconds`, without
   * counting this delivery against its attempts: for a job whose key has as
   * many jobs running as it may (see lib/worker/key_turns.ts). SQS cannot
   * uncount a receive, so there a copy is sent and the message deleted.
   */
  defer(message: ReceivedJob, seconds: number): Promise<void>;
  /** Moves a message to its queue's dead-letter queue now, for a job given up for good. */
  deadLetter(message: ReceivedJob): Promise<void>;
  /** Deliveries after which a queue moves a message to its dead-letter queue, if it has one. */
  maxReceiveCount(queue: QueueRef): Promise<number | undefined>;
  /** Approximate message counts of a queue and its dead-letter queue. */
  depth(queue: QueueRef): Promise<QueueDepth>;
  /**
   * Reads up to `maxMessages` of the queue's dead-letter queue, leaving them
   * there: they are hidden from later calls for `hideSeconds`, so repeated
   * calls page through the queue and then start again.
   */
  receiveDeadLetters(queue: QueueRef, options: DeadLetterOptions): Promise<JobTicket[]>;
  /**
   * Moves the messages of the queue's dead-letter queue back to the queue, as
   * they are: the worker decides what each one means (see lib/core/retry.ts).
   * A message a reader holds (the worker's dead-letter sweep hides what it
   * reads for a few seconds) is waited for, up to a limit. One the worker
   * sent back while this redrive (`requestedAt`) runs is left where it is.
   */
  redriveDeadLetters(queue: QueueRef, requestedAt?: Date): Promise<RedriveResult>;
}
