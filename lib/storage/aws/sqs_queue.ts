/**
 * The job queue on Amazon SQS: one queue per backend and lane, each with its
 * dead-letter queue. Each message carries its job's owner as its
 * `MessageGroupId`, which makes a standard queue a fair queue: when one
 * owner's messages pile up, SQS delivers the others' first (see
 * docs/keys-and-limits.md for what that does and does not promise).
 */
import {
  ChangeMessageVisibilityBatchCommand,
  ChangeMessageVisibilityCommand,
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
  type SQSClient,
  StartMessageMoveTaskCommand,
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
  type RedriveResult,
  type SendOptions,
} from "../../core/queue.ts";
import { DeleteBatcher } from "./sqs_deletes.ts";

/** SQS's longest delay for one message. */
const MAX_DELAY_SECONDS = 900;

/** How long a copying redrive goes on in one call, so it ends well within a Lambda's timeout. */
const COPY_BUDGET_MS = 15_000;
/** How long a copying redrive waits before it counts a dead-letter queue that looked empty again. */
const EMPTY_RECHECK_MS = 250;

/** The base queue name or URL of each lane; each backend's queue is named from it. */
export type LaneQueues = Readonly<Record<Lane, string>>;

/** A {@linkcode JobQueue} on SQS: two queues per backend, named by {@linkcode queueNameFor}. */
export class SqsJobQueue implements JobQueue {
  #sqs: SQSClient;
  #bases: LaneQueues;
  #deletes: DeleteBatcher;
  #urls = new Map<string, Promise<string>>();
  /** Each queue's dead-letter queue URL, or undefined without a redrive policy. */
  #deadLetterUrls = new Map<string, Promise<string | undefined>>();
  /** False once SQS has shown it has no message move tasks (Moto): redrives copy from then on. */
  #moveTasks = true;

  constructor(sqs: SQSClient, bases: LaneQueues) {
    this.#sqs = sqs;
    this.#bases = bases;
    this.#deletes = new DeleteBatcher(sqs);
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
        MessageGroupId: ticket.owner,
      }),
    );
  }

  /**
   * A copy goes first, with the deliveries so far in its ticket, then the
   * message is deleted: SQS counts every receive, and a message put back by
   * its visibility would reach the dead-letter queue unrun.
   */
  async defer(message: ReceivedJob, seconds: number): Promise<void> {
    const { prior_deliveries: _before, ...rest } = message.ticket;
    const delivered = message.receiveCount - 1;
    const ticket: JobTicket = delivered > 0 ? { ...rest, prior_deliveries: delivered } : rest;
    await this.send(message.lane, ticket, { delaySeconds: seconds });
    await this.delete(message);
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
    return (out.Messages ?? []).map((m) => {
      const ticket = parseTicket(m.Body);
      return {
        backend: queue.backend,
        lane: queue.lane,
        ticket,
        receiveCount: Number(m.Attributes?.ApproximateReceiveCount ?? 1) +
          (ticket.prior_deliveries ?? 0),
        receipt: m.ReceiptHandle ?? "",
      };
    });
  }

  /** Sent with the deletes of the same queue that come within a few milliseconds (sqs_deletes.ts). */
  async delete(message: ReceivedJob): Promise<void> {
    await this.#deletes.delete(await this.#url(message), message.receipt);
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
      new SendMessageCommand({
        QueueUrl: dlqUrl,
        MessageBody: JSON.stringify(message.ticket),
        MessageGroupId: message.ticket.owner,
      }),
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

  /**
   * Starts an SQS message move task from the dead-letter queue back to its
   * queue. Where SQS has none (Moto answers 500 with an HTML page), copies
   * instead: receive, send again, delete, for up to 15 s per call, waiting for
   * messages a reader holds for a moment.
   */
  async redriveDeadLetters(queue: QueueRef, requestedAt?: Date): Promise<RedriveResult> {
    const dlqUrl = await this.#deadLetterUrl(queue);
    if (!dlqUrl) return { method: "copy", moved: 0, left: 0 };
    const queueUrl = await this.#url(queue);
    if (this.#moveTasks) {
      try {
        const [source, destination] = await Promise.all(
          [dlqUrl, queueUrl].map((url) => this.#arn(url)),
        );
        const out = await this.#sqs.send(
          new StartMessageMoveTaskCommand({ SourceArn: source, DestinationArn: destination }),
        );
        return { method: "move_task", task: out.TaskHandle };
      } catch (err) {
        if (!lacksMoveTasks(err)) throw err;
        this.#moveTasks = false;
      }
    }
    return await this.#copyBack(dlqUrl, queueUrl, requestedAt);
  }

  async #copyBack(dlqUrl: string, queueUrl: string, requestedAt?: Date): Promise<RedriveResult> {
    const deadline = Date.now() + COPY_BUDGET_MS;
    // Those there now, not those the worker dead-letters again while this runs:
    // the worker marks those it refuses, and they do not count.
    const before = await this.#counts(dlqUrl);
    const limit = before.visible + before.hidden;
    let moved = 0;
    const refused: Message[] = [];
    try {
      while (moved < limit && Date.now() < deadline) {
        const batch = await this.#copyBatch(dlqUrl, queueUrl, limit - moved, requestedAt);
        if (batch === "empty") break;
        moved += batch.moved;
        refused.push(...batch.refused);
      }
    } finally {
      await this.#showAgain(dlqUrl, refused);
    }
    const { visible, hidden } = await this.#counts(dlqUrl);
    return { method: "copy", moved, left: visible + hidden };
  }

  /**
   * Copies one batch back; "empty" when the dead-letter queue is. A batch may
   * be smaller than asked, or none at all when a reader holds the rest.
   */
  async #copyBatch(
    dlqUrl: string,
    queueUrl: string,
    most: number,
    requestedAt: Date | undefined,
  ): Promise<{ moved: number; refused: Message[] } | "empty"> {
    const out = await this.#sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: dlqUrl,
        MaxNumberOfMessages: Math.min(10, most),
        // A short long poll asks every SQS server, so an empty answer means empty.
        WaitTimeSeconds: 1,
        VisibilityTimeout: 60,
        MessageAttributeNames: ["All"],
      }),
    );
    const received = out.Messages ?? [];
    if (received.length === 0) {
      // Otherwise held by a reader for a moment (the worker's sweep): the caller waits for them.
      return await this.#looksEmpty(dlqUrl) ? "empty" : { moved: 0, refused: [] };
    }
    const refused = received.filter((m) => refusedBy(m, requestedAt));
    const messages = received.filter((m) => !refusedBy(m, requestedAt));
    if (messages.length === 0) return { moved: 0, refused };
    const sent = await this.#sqs.send(
      new SendMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: messages.map((m, i) => ({
          Id: String(i),
          MessageBody: m.Body ?? "",
          MessageAttributes: m.MessageAttributes,
          MessageGroupId: parseTicket(m.Body).owner,
        })),
      }),
    );
    const copied = (sent.Successful ?? []).map((entry) => messages[Number(entry.Id)]);
    if (copied.length > 0) {
      await this.#sqs.send(
        new DeleteMessageBatchCommand({
          QueueUrl: dlqUrl,
          Entries: copied.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle })),
        }),
      );
    }
    const failed = sent.Failed ?? [];
    if (failed.length > 0) {
      // What was not sent stays in the dead-letter queue and shows again after 60 s.
      throw new Error(
        `Cannot redrive every dead letter: ${failed.length} could not be sent back (${
          failed[0].Code
        }: ${failed[0].Message}); ${copied.length} of this batch were`,
      );
    }
    return { moved: copied.length, refused };
  }

  /**
   * Whether a queue holds no message, visible or hidden: it must count none
   * twice, a moment apart. The counts come from separate figures, and Moto
   * reads the clock for each: a message turning visible between the two is
   * in neither (a redrive once reported a dead letter that was there as gone).
   */
  async #looksEmpty(queueUrl: string): Promise<boolean> {
    for (let look = 0; look < 2; look++) {
      if (look > 0) await new Promise((resolve) => setTimeout(resolve, EMPTY_RECHECK_MS));
      const { visible, hidden } = await this.#counts(queueUrl);
      if (visible + hidden > 0) return false;
    }
    return true;
  }

  /** Makes messages this redrive read but left visible again at once, for the next one. */
  async #showAgain(dlqUrl: string, messages: Message[]): Promise<void> {
    for (let i = 0; i < messages.length; i += 10) {
      await this.#sqs.send(
        new ChangeMessageVisibilityBatchCommand({
          QueueUrl: dlqUrl,
          Entries: messages.slice(i, i + 10).map((m, j) => ({
            Id: String(j),
            ReceiptHandle: m.ReceiptHandle,
            VisibilityTimeout: 0,
          })),
        }),
      ).catch(() => {}); // they show again after 60 s anyway
    }
  }

  async #arn(queueUrl: string): Promise<string> {
    const out = await this.#sqs.send(
      new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ["QueueArn"] }),
    );
    const arn = out.Attributes?.QueueArn;
    if (!arn) throw new Error(`Cannot find queue ARN: none for "${queueUrl}"`);
    return arn;
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

  /**
   * The AWS account that owns a queue, read from its URL
   * (`https://sqs.<region>.amazonaws.com/<account>/<name>`); undefined when the
   * URL has none.
   */
  async ownerAccount(queue: QueueRef): Promise<string | undefined> {
    const path = new URL(await this.#url(queue)).pathname.split("/");
    return /^\d{12}$/.test(path[1] ?? "") ? path[1] : undefined;
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

/**
 * Whether an error says this SQS has no message move tasks: Moto answers 500
 * with an HTML page, which the SDK fails to read as JSON ("SyntaxError").
 * AWS's own 500 (`InternalFailure`) is only a failure.
 */
export function lacksMoveTasks(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  const status = e?.$metadata?.httpStatusCode ?? 0;
  return (e?.name === "SyntaxError" && status >= 500) ||
    e?.name === "NotImplemented" || e?.name === "InvalidAction";
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
        ...(Number.isInteger(value.generation) && value.generation > 0
          ? { generation: value.generation }
          : {}),
        ...(typeof value.refused_redrive === "string"
          ? { refused_redrive: value.refused_redrive }
          : {}),
        ...(typeof value.owner === "string" && value.owner ? { owner: value.owner } : {}),
        ...(positive(value.in_flight) ? { in_flight: value.in_flight } : {}),
        ...(positive(value.prior_deliveries) ? { prior_deliveries: value.prior_deliveries } : {}),
      };
    }
  } catch {
    // not JSON: handled below
  }
  return { job_id: "", conversation_id: "", route: "" };
}

function positive(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) > 0;
}

/** Whether a dead letter went back there because the worker refused this redrive's retry. */
function refusedBy(message: Message, requestedAt: Date | undefined): boolean {
  const refused = requestedAt && parseTicket(message.Body).refused_redrive;
  return refused !== undefined && Date.parse(refused) >= requestedAt!.getTime();
}
