/**
 * The SQS operations the queue makes, typed with the SDK's shapes (its types
 * only; none of its code is loaded), over the JSON protocol.
 */
import type {
  ChangeMessageVisibilityBatchRequest,
  ChangeMessageVisibilityBatchResult,
  ChangeMessageVisibilityRequest,
  DeleteMessageBatchRequest,
  DeleteMessageBatchResult,
  DeleteMessageRequest,
  GetQueueAttributesRequest,
  GetQueueAttributesResult,
  GetQueueUrlRequest,
  GetQueueUrlResult,
  ReceiveMessageRequest,
  ReceiveMessageResult,
  SendMessageBatchRequest,
  SendMessageBatchResult,
  SendMessageRequest,
  SendMessageResult,
  StartMessageMoveTaskRequest,
  StartMessageMoveTaskResult,
} from "@aws-sdk/client-sqs";
import type { JsonService } from "./json_protocol.ts";

/** Each operation's input and output. */
interface SqsOperations {
  SendMessage: [SendMessageRequest, SendMessageResult];
  SendMessageBatch: [SendMessageBatchRequest, SendMessageBatchResult];
  ReceiveMessage: [ReceiveMessageRequest, ReceiveMessageResult];
  DeleteMessage: [DeleteMessageRequest, Record<never, never>];
  DeleteMessageBatch: [DeleteMessageBatchRequest, DeleteMessageBatchResult];
  ChangeMessageVisibility: [ChangeMessageVisibilityRequest, Record<never, never>];
  ChangeMessageVisibilityBatch: [
    ChangeMessageVisibilityBatchRequest,
    ChangeMessageVisibilityBatchResult,
  ];
  GetQueueAttributes: [GetQueueAttributesRequest, GetQueueAttributesResult];
  GetQueueUrl: [GetQueueUrlRequest, GetQueueUrlResult];
  StartMessageMoveTask: [StartMessageMoveTaskRequest, StartMessageMoveTaskResult];
}

/** SQS's longest long poll, what a receive that names no wait may take. */
const MAX_WAIT_SECONDS = 20;

/** SQS, one typed call at a time. */
export class SqsCalls {
  #sqs: JsonService;
  #timeoutMs: number;

  /** `timeoutMs`: how long a call may take, besides a long poll's wait. */
  constructor(sqs: JsonService, timeoutMs = 15_000) {
    this.#sqs = sqs;
    this.#timeoutMs = timeoutMs;
  }

  /**
   * Calls `operation`. A receive may take its long poll's wait on top of the
   * usual time, so a poll in flight is never cut off; only a stuck one is.
   */
  call<K extends keyof SqsOperations>(
    operation: K,
    input: SqsOperations[K][0],
  ): Promise<SqsOperations[K][1]> {
    const wait = (input as ReceiveMessageRequest).WaitTimeSeconds;
    return this.#sqs.call(operation, input, {
      timeoutMs: operation === "ReceiveMessage"
        ? this.#timeoutMs + (wait ?? MAX_WAIT_SECONDS) * 1000
        : this.#timeoutMs,
    });
  }
}
