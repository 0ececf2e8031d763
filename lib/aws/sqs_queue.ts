/** The job queue on Amazon SQS: one queue per lane, each with its dead-letter queue. */
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SQSClient,
} from "@aws-sdk/client-sqs";
import type { JobTicket } from "../jobs.ts";
import type { JobQueue, Lane, QueueDepth, ReceivedJob, ReceiveOptions } from "../queue.ts";

/** The queue name or URL of each lane. */
export type LaneQueues = Readonly<Record<Lane, string>>;

/** A {@linkcode JobQueue} on two SQS queues. */
export class SqsJobQueue implements JobQueue {
  #sqs: SQSClient;
  #queues: LaneQueues;
  #urls = new Map<Lane, Promise<string>>();

  constructor(sqs: SQSClient, queues: LaneQueues) {
    this.#sqs = sqs;
    this.#queues = queues;
  }

  async send(lane: Lane, ticket: JobTicket): Promise<void> {
    await this.#sqs.send(
      new SendMessageCommand({
        QueueUrl: await this.#url(lane),
        MessageBody: JSON.stringify(ticket),
      }),
    );
  }

  async receive(lane: Lane, options: ReceiveOptions): Promise<ReceivedJob[]> {
    const out = await this.#sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: await this.#url(lane),
        MaxNumberOfMessages: options.maxMessages,
        WaitTimeSeconds: options.waitSeconds,
        VisibilityTimeout: options.visibilitySeconds,
        MessageSystemAttributeNames: ["ApproximateReceiveCount"],
      }),
      { abortSignal: options.signal },
    ).catch((err) => {
      // An aborted poll is an empty poll; a message SQS handed out meanwhile returns after its visibility timeout.
      if (options.signal?.aborted) return { Messages: [] };
      throw err;
    });
    return (out.Messages ?? []).map((m) => ({
      lane,
      ticket: parseTicket(m.Body),
      receiveCount: Number(m.Attributes?.ApproximateReceiveCount ?? 1),
      receipt: m.ReceiptHandle ?? "",
    }));
  }

  async delete(message: ReceivedJob): Promise<void> {
    await this.#sqs.send(
      new DeleteMessageCommand({
        QueueUrl: await this.#url(message.lane),
        ReceiptHandle: message.receipt,
      }),
    );
  }

  async release(message: ReceivedJob, delaySeconds: number): Promise<void> {
    await this.#sqs.send(
      new ChangeMessageVisibilityCommand({
        QueueUrl: await this.#url(message.lane),
        ReceiptHandle: message.receipt,
        VisibilityTimeout: delaySeconds,
      }),
    );
  }

  async deadLetter(message: ReceivedJob): Promise<void> {
    const dlqArn = (await this.#redrivePolicy(message.lane))?.deadLetterTargetArn;
    if (!dlqArn) {
      // Without a dead-letter queue the message stays, to be redelivered: never dropped.
      throw new Error(
        `Cannot dead-letter job "${message.ticket.job_id}": the ${message.lane} queue has no redrive policy`,
      );
    }
    await this.#sqs.send(
      new SendMessageCommand({
        QueueUrl: await resolveQueueUrl(this.#sqs, queueNameFromArn(dlqArn)),
        MessageBody: JSON.stringify(message.ticket),
      }),
    );
    await this.delete(message);
  }

  async maxReceiveCount(lane: Lane): Promise<number | undefined> {
    const count = Number((await this.#redrivePolicy(lane))?.maxReceiveCount);
    return Number.isFinite(count) ? count : undefined;
  }

  async depth(lane: Lane): Promise<QueueDepth> {
    const main = await this.#counts(await this.#url(lane));
    const dlqArn = (await this.#redrivePolicy(lane))?.deadLetterTargetArn;
    const dead = dlqArn
      ? await this.#counts(await resolveQueueUrl(this.#sqs, queueNameFromArn(dlqArn)))
      : undefined;
    return {
      waiting: main.visible,
      in_flight: main.hidden,
      dead: dead ? dead.visible + dead.hidden : 0,
    };
  }

  async #redrivePolicy(
    lane: Lane,
  ): Promise<{ maxReceiveCount?: unknown; deadLetterTargetArn?: string } | undefined> {
    const out = await this.#sqs.send(
      new GetQueueAttributesCommand({
        QueueUrl: await this.#url(lane),
        AttributeNames: ["RedrivePolicy"],
      }),
    );
    const policy = out.Attributes?.RedrivePolicy;
    return policy ? JSON.parse(policy) : undefined;
  }

  async #counts(queueUrl: string): Promise<{ visible: number; hidden: number }> {
    const out = await this.#sqs.send(
      new GetQueueAttributesCommand({
        QueueUrl: queueUrl,
        AttributeNames: [
          "ApproximateNumberOfMessages",
          "ApproximateNumberOfMessagesNotVisible",
          "ApproximateNumberOfMessagesDelayed",
        ],
      }),
    );
    const attributes: Record<string, string | undefined> = out.Attributes ?? {};
    const count = (name: string) => Number(attributes[name] ?? 0);
    return {
      visible: count("ApproximateNumberOfMessages"),
      hidden: count("ApproximateNumberOfMessagesNotVisible") +
        count("ApproximateNumberOfMessagesDelayed"),
    };
  }

  #url(lane: Lane): Promise<string> {
    let url = this.#urls.get(lane);
    if (!url) {
      url = resolveQueueUrl(this.#sqs, this.#queues[lane]);
      // A failed lookup is not cached, so the next call tries again.
      url.catch(() => this.#urls.delete(lane));
      this.#urls.set(lane, url);
    }
    return url;
  }
}

/** The URL of a queue given by name or by URL. */
export async function resolveQueueUrl(sqs: SQSClient, nameOrUrl: string): Promise<string> {
  if (/^https?:\/\//.test(nameOrUrl)) return nameOrUrl;
  const out = await sqs.send(new GetQueueUrlCommand({ QueueName: nameOrUrl }));
  if (!out.QueueUrl) throw new Error(`Cannot find queue: no URL for "${nameOrUrl}"`);
  return out.QueueUrl;
}

function queueNameFromArn(arn: string): string {
  return arn.split(":").pop() ?? arn;
}

/**
 * Reads a message body. A body that is not a ticket becomes one with an empty
 * job id, so the worker can move that one message to the dead-letter queue
 * instead of failing the whole receive.
 */
function parseTicket(body: string | undefined): JobTicket {
  try {
    const value = JSON.parse(body ?? "null");
    if (typeof value?.job_id === "string" && typeof value?.conversation_id === "string") {
      return {
        job_id: value.job_id,
        conversation_id: value.conversation_id,
        route: typeof value.route === "string" ? value.route : "",
        ...(value.stateless === true ? { stateless: true } : {}),
      };
    }
  } catch {
    // not JSON: handled below
  }
  return { job_id: "", conversation_id: "", route: "" };
}
