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

  constructor(sqs: JsonService) {
    this.#sqs = sqs;
  }

  /** Calls `operation`; a receive may also take its long poll's wait. */
  call<K extends keyof SqsOperations>(
    operation: K,
    input: SqsOperations[K][0],
  ): Promise<SqsOperations[K][1]> {
    return this.#sqs.call(operation, input, {
      waitSeconds: operation === "ReceiveMessage"
        ? (input as ReceiveMessageRequest).WaitTimeSeconds ?? MAX_WAIT_SECONDS
        : 0,
    });
  }
}
