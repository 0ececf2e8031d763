/** Long-polling several queues at once, without losing what the slower ones bring. */
import type { QueueRef, ReceivedJob } from "../core/queue.ts";

/** Options for {@linkcode longPollAll}. */
export interface LongPollOptions {
  /** Starts one receive; it is never abandoned, so what it brings is never lost. */
  receive: (queue: QueueRef) => Promise<ReceivedJob[]>;
  /** Takes what a queue brings after another answered first. */
  late: (messages: ReceivedJob[]) => void;
}

/**
 * Long-polls every given queue at once. Answers with the first queue that
 * brings messages; what the others bring later goes to `late`. Answers empty
 * once all are done, or throws the first error when none brought anything.
 */
export function longPollAll(
  queues: readonly QueueRef[],
  options: LongPollOptions,
): Promise<ReceivedJob[]> {
  return new Promise((resolve, reject) => {
    let pending = queues.length;
    let answered = false;
    let failure: { error: unknown } | undefined;
    const settleIfLast = () => {
      if (--pending > 0 || answered) return;
      answered = true;
      if (failure) reject(failure.error);
      else resolve([]);
    };
    for (const queue of queues) {
      options.receive(queue).then(
        (messages) => {
          if (messages.length > 0 && !answered) {
            answered = true;
            resolve(messages);
          } else if (messages.length > 0) {
            options.late(messages);
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
