/** The job queue on Amazon SQS: one queue per backend and lane, each with its dead-letter queue. */
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SQSClient,
} from "@aws-sdk/client-sqs";
import type { JobTicket } from "../../core/jobs.ts";
import {
  type DeadLetterOptions,
  type JobQueue,
  type Lane,
  type QueueDepth,
  queueNameFor,
  type QueueRef,
  type ReceivedJob,
  type ReceiveOptions,
  type SendOptions,
} from "../../core/queue.ts";

/** SQS's longest delay for one message. */
const MAX_DELAY_SECONDS = 900;

/** The base queue name or URL of each lane; each backend's queue is named from it. */
export type LaneQueues = Readonly<Record<Lane, string>>;

/** A {@linkcode JobQueue} on SQS: two queues per backend, named by {@linkcode queueNameFor}. */
export class SqsJobQueue implements JobQueue {
  #sqs: SQSClient;
  #bases: LaneQueues;
  #urls = new Map<string, Promise<string>>();
  /** Each queue's dead-letter queue URL, or undefined without a redrive policy. */
  #deadLetterUrls = new Map<string, Promise<string | undefined>>();

  constructor(sqs: SQSClient, bases: LaneQueues) {
    this.#sqs = sqs;
    this.#bases = bases;
  }

  async send(lane: Lane, ticket: JobTicket, options: SendOptions = {}): Promise<void> {
    if (!ticket.route) {
      throw new TypeError(`Cannot send job "${ticket.job_id}": its ticket names no backend`);
    }
    const delay = Math.min(MAX_DELAY_SECONDS, Math.max(0, Math.round(options.delaySeconds ?? 0)));
    await this.#sqs.send(
      new SendMessageCommand({
        QueueUrl: await this.#url({ backend: ticket.route, lane }),
        MessageBody: JSON.stringify(ticket),
        DelaySeconds: delay > 0 ? delay : undefined,
      }),
    );
  }

  /**
   * Never aborted, whatever `options.signal` says: SQS may already have handed
   * this receive a message, which would then stay hidden for the visibility
   * timeout with nobody to run it (aws-sdk-js#2350). A long poll ends within
   * `waitSeconds` on its own.
   */
  async receive(queue: QueueRef, options: ReceiveOptions): Promise<ReceivedJob[]> {
    const out = await this.#sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: await this.#url(queue),
        MaxNumberOfMessages: options.maxMessages,
        WaitTimeSeconds: options.waitSeconds,
        VisibilityTimeout: options.visibilitySeconds,
        MessageSystemAttributeNames: ["ApproximateReceiveCount"],
      }),
    );
    return (out.Messages ?? []).map((m) => ({
      backend: queue.backend,
      lane: queue.lane,
      ticket: parseTicket(m.Body),
      receiveCount: Number(m.Attributes?.ApproximateReceiveCount ?? 1),
      receipt: m.ReceiptHandle ?? "",
    }));
  }

  async delete(message: ReceivedJob): Promise<void> {
    await this.#sqs.send(
      new DeleteMessageCommand({
        QueueUrl: await this.#url(message),
        ReceiptHandle: message.receipt,
      }),
    );
  }

  async returnAfter(message: ReceivedJob, seconds: number): Promise<void> {
    await this.#sqs.send(
      new ChangeMessageVisibilityCommand({
        QueueUrl: await this.#url(message),
        ReceiptHandle: message.receipt,
        VisibilityTimeout: seconds,
      }),
    );
  }

  async deadLetter(message: ReceivedJob): Promise<void> {
    const dlqUrl = await this.#deadLetterUrl(message);
    if (!dlqUrl) {
      // Without a dead-letter queue the message stays, to be redelivered: never dropped.
      throw new Error(
        `Cannot dead-letter job "${message.ticket.job_id}": ${
          describe(message)
        } has no redrive policy`,
      );
    }
    await this.#sqs.send(
      new SendMessageCommand({ QueueUrl: dlqUrl, MessageBody: JSON.stringify(message.ticket) }),
    );
    await this.delete(message);
  }

  async maxReceiveCount(queue: QueueRef): Promise<number | undefined> {
    const count = Number((await this.#redrivePolicy(queue))?.maxReceiveCount);
    return Number.isFinite(count) ? count : undefined;
  }

  async depth(queue: QueueRef): Promise<QueueDepth> {
    const main = await this.#counts(await this.#url(queue));
    const dlqUrl = await this.#deadLetterUrl(queue);
    const dead = dlqUrl ? await this.#counts(dlqUrl) : undefined;
    return {
      waiting: main.visible,
      in_flight: main.hidden,
      dead: dead ? dead.visible + dead.hidden : 0,
    };
  }

  async receiveDeadLetters(queue: QueueRef, options: DeadLetterOptions): Promise<JobTicket[]> {
    const dlqUrl = await this.#deadLetterUrl(queue);
    if (!dlqUrl) return [];
    const out = await this.#sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: dlqUrl,
        MaxNumberOfMessages: Math.min(10, options.maxMessages),
        WaitTimeSeconds: 0,
        VisibilityTimeout: options.hideSeconds,
      }),
    );
    return (out.Messages ?? []).map((m) => parseTicket(m.Body));
  }

  /** Looked up once per queue (a queue's redrive target does not move), and again after a failure. */
  #deadLetterUrl(queue: QueueRef): Promise<string | undefined> {
    return cached(this.#deadLetterUrls, key(queue), async () => {
      const dlqArn = (await this.#redrivePolicy(queue))?.deadLetterTargetArn;
      return dlqArn ? await resolveQueueUrl(this.#sqs, queueNameFromArn(dlqArn)) : undefined;
    });
  }

  async #redrivePolicy(
    queue: QueueRef,
  ): Promise<{ maxReceiveCount?: unknown; deadLetterTargetArn?: string } | undefined> {
    const out = await this.#sqs.send(
      new GetQueueAttributesCommand({
        QueueUrl: await this.#url(queue),
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

  #url(queue: QueueRef): Promise<string> {
    return cached(
      this.#urls,
      key(queue),
      () => resolveQueueUrl(this.#sqs, queueNameFor(this.#bases[queue.lane], queue.backend)),
    );
  }
}

function key(queue: QueueRef): string {
  return `${queue.lane}/${queue.backend}`;
}

function describe(queue: QueueRef): string {
  return `backend "${queue.backend}"'s ${queue.lane} queue`;
}

/** A lookup kept per key once it succeeds; a failed one is forgotten, so the next call tries again. */
function cached<K, V>(cache: Map<K, Promise<V>>, key: K, lookup: () => Promise<V>): Promise<V> {
  let value = cache.get(key);
  if (!value) {
    value = lookup();
    value.catch(() => cache.delete(key));
    cache.set(key, value);
  }
  return value;
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
        ...(value.line_check === true ? { line_check: true } : {}),
      };
    }
  } catch {
    // not JSON: handled below
  }
  return { job_id: "", conversation_id: "", route: "" };
}
