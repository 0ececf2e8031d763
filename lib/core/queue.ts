/** What the gateway needs from a job queue with a priority lane, whichever queue backs it. */
import type { JobTicket, Priority } from "./jobs.ts";

/** The two lanes: the priority queue is always drained first. */
export type Lane = "priority" | "default";

/** Lanes in the order the worker takes from them. */
export const LANES: readonly Lane[] = ["priority", "default"];

/** The lane a job of a given priority goes to. */
export function laneFor(priority: Priority): Lane {
  return priority === "high" ? "priority" : "default";
}

/** A message taken from a lane, hidden from other workers until deleted or released. */
export interface ReceivedJob {
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
  /** Long-poll for up to this many seconds when the lane is empty; 0 returns at once. */
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

/** How many messages a lane holds. */
export interface QueueDepth {
  /** Ready to be received. */
  waiting: number;
  /** Received and not yet deleted, or waiting out a retry delay. */
  in_flight: number;
  /** In the lane's dead-letter queue. */
  dead: number;
}

/** How a lane's dead letters were moved back to it. */
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

/** A two-lane job queue with at-least-once delivery. */
export interface JobQueue {
  send(lane: Lane, ticket: JobTicket, options?: SendOptions): Promise<void>;
  receive(lane: Lane, options: ReceiveOptions): Promise<ReceivedJob[]>;
  /** Removes a message for good: only after its job is done. */
  delete(message: ReceivedJob): Promise<void>;
  /**
   * Hides a message for `seconds` from now, after which it returns to its
   * lane: 0 puts it back at once, a retry delay schedules another attempt, and
   * the heartbeat keeps a held message hidden this way.
   */
  returnAfter(message: ReceivedJob, seconds: number): Promise<void>;
  /** Moves a message to its lane's dead-letter queue now, for a job given up for good. */
  deadLetter(message: ReceivedJob): Promise<void>;
  /** Deliveries after which a lane moves a message to its dead-letter queue, if it has one. */
  maxReceiveCount(lane: Lane): Promise<number | undefined>;
  /** Approximate message counts of a lane and its dead-letter queue. */
  depth(lane: Lane): Promise<QueueDepth>;
  /**
   * Reads up to `maxMessages` of the lane's dead-letter queue, leaving them
   * there: they are hidden from later calls for `hideSeconds`, so repeated
   * calls page through the queue and then start again.
   */
  receiveDeadLetters(lane: Lane, options: DeadLetterOptions): Promise<JobTicket[]>;
  /**
   * Moves the messages of the lane's dead-letter queue back to the lane, as
   * they are: the worker decides what each one means (see lib/core/retry.ts).
   * A message a reader holds (the worker's dead-letter sweep hides what it
   * reads for a few seconds) is waited for, up to a limit.
   */
  redriveDeadLetters(lane: Lane): Promise<RedriveResult>;
}
