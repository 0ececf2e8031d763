/**
 * Deletes of messages whose jobs end together, sent as one
 * `DeleteMessageBatch` per queue: a busy worker's jobs end a few at a time,
 * and each delete is otherwise a call of its own (one of the five or so AWS
 * calls a job makes in the worker). A delete waits at most
 * {@linkcode DELETE_WINDOW_MS} for others to join it; the message stays
 * hidden meanwhile, as it would while a lone call was under way.
 */
import {
  DeleteMessageBatchCommand,
  DeleteMessageCommand,
  type SQSClient,
} from "@aws-sdk/client-sqs";

/** How long a delete waits for others of the same queue before it is sent. */
export const DELETE_WINDOW_MS = 25;
/** SQS's most entries in one batch. */
const MAX_BATCH = 10;

/** A delete waiting to be sent. */
interface PendingDelete {
  receipt: string;
  done: PromiseWithResolvers<void>;
}

/** The error of a refused entry, named by SQS's code for it (`ReceiptHandleIsInvalid`), as a lone delete's is. */
function entryError(code: string, message: string | undefined): Error {
  const err = new Error(`Cannot delete message: ${code}${message ? `: ${message}` : ""}`);
  err.name = code;
  return err;
}

/** Gathers deletes per queue and sends them a batch at a time. */
export class DeleteBatcher {
  #sqs: SQSClient;
  #pending = new Map<string, PendingDelete[]>();
  #timers = new Map<string, ReturnType<typeof setTimeout>>();

  constructor(sqs: SQSClient) {
    this.#sqs = sqs;
  }

  /** Deletes the message of `receipt` from `queueUrl`, with any others that come meanwhile. */
  delete(queueUrl: string, receipt: string): Promise<void> {
    const done = Promise.withResolvers<void>();
    const pending = this.#pending.get(queueUrl) ?? [];
    pending.push({ receipt, done });
    this.#pending.set(queueUrl, pending);
    if (pending.length >= MAX_BATCH) {
      this.#send(queueUrl);
    } else if (!this.#timers.has(queueUrl)) {
      this.#timers.set(queueUrl, setTimeout(() => this.#send(queueUrl), DELETE_WINDOW_MS));
    }
    return done.promise;
  }

  #send(queueUrl: string): void {
    clearTimeout(this.#timers.get(queueUrl));
    this.#timers.delete(queueUrl);
    const batch = this.#pending.get(queueUrl) ?? [];
    this.#pending.delete(queueUrl);
    if (batch.length === 1) {
      const [{ receipt, done }] = batch;
      this.#sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: receipt }))
        .then(() => done.resolve(), done.reject);
      return;
    }
    this.#sqs.send(
      new DeleteMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: batch.map(({ receipt }, i) => ({ Id: String(i), ReceiptHandle: receipt })),
      }),
    ).then((out) => {
      for (const entry of out.Successful ?? []) batch[Number(entry.Id)]?.done.resolve();
      for (const entry of out.Failed ?? []) {
        batch[Number(entry.Id)]?.done.reject(
          entryError(entry.Code ?? "UnknownError", entry.Message),
        );
      }
      // Settling twice does nothing: only an entry SQS said nothing of is refused here.
      for (const { done } of batch) {
        done.reject(entryError("NoAnswer", "SQS's answer did not name this entry"));
      }
    }, (err) => {
      for (const { done } of batch) done.reject(err);
    });
  }
}
