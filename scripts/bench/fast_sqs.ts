/**
 * A fast SQS stand-in for the bench only: a real HTTP server on 127.0.0.1
 * speaking the part of SQS's JSON protocol (AWS JSON 1.0, as the SDK sends it)
 * that the gateway uses: CreateQueue, GetQueueUrl, GetQueueAttributes (with a
 * RedrivePolicy and the approximate counts), SendMessage, ReceiveMessage with
 * long polling, visibility and receive counts, DeleteMessage,
 * ChangeMessageVisibility, their batch forms, and dead-lettering past a queue's
 * `maxReceiveCount`.
 *
 * Moto answers about 300 requests a second on one core, so a bench on it
 * measures Moto; this answers thousands, so the bench measures the worker.
 * The tests never use it in Moto's place: it does only what the bench needs.
 *
 * `startFastSqs()` runs it in a process of its own, as SQS is another machine;
 * the process ends when the bench's ends (its standard input closes).
 */
import { createHash } from "node:crypto";

const ACCOUNT = "000000000000";
const REGION = "us-east-1";
/** SQS's defaults for a queue without these attributes. */
const DEFAULT_VISIBILITY_S = 30;
const MAX_WAIT_S = 20;

interface Message {
  id: string;
  body: string;
  md5: string;
  sentAt: number;
  /** Hidden until then: delayed, or received and not yet back. */
  visibleAt: number;
  receiveCount: number;
  firstReceivedAt?: number;
  /** The receipt of the latest delivery; only it may change the visibility. */
  receipt?: string;
}

interface Queue {
  name: string;
  url: string;
  arn: string;
  attributes: Record<string, string>;
  /** In send order: SQS's standard queues are roughly first in, first out. */
  messages: Map<string, Message>;
  /** Long polls waiting for a message. */
  waiters: Set<() => void>;
}

/** A request SQS refuses: its error code and HTTP status. */
class SqsError extends Error {
  constructor(readonly code: string, message: string, readonly queryCode = code) {
    super(message);
  }
}

/** The running stand-in, served in this process. */
export interface FastSqsServer {
  /** http://127.0.0.1:<port> */
  readonly url: string;
  /** Requests answered, by action. */
  readonly requests: ReadonlyMap<string, number>;
  stop(): Promise<void>;
}

/** Serves the stand-in in this process on a free loopback port. */
export function serveFastSqs(): FastSqsServer {
  const queues = new Map<string, Queue>();
  const byArn = new Map<string, Queue>();
  const requests = new Map<string, number>();
  let origin = "";

  const queueAt = (url: unknown): Queue => {
    const name = String(url ?? "").split("/").pop() ?? "";
    const queue = queues.get(name);
    if (!queue) {
      throw new SqsError(
        "QueueDoesNotExist",
        `The specified queue does not exist: ${url}`,
        "AWS.SimpleQueueService.NonExistentQueue",
      );
    }
    return queue;
  };

  const actions: Record<string, (input: Record<string, unknown>) => unknown> = {
    CreateQueue(input) {
      const name = String(input.QueueName ?? "");
      if (!/^[\w-]{1,80}(\.fifo)?$/.test(name)) {
        throw new SqsError("InvalidParameterValue", `Invalid queue name: ${name}`);
      }
      const existing = queues.get(name);
      if (existing) return { QueueUrl: existing.url };
      const queue: Queue = {
        name,
        url: `${origin}/${ACCOUNT}/${name}`,
        arn: `arn:aws:sqs:${REGION}:${ACCOUNT}:${name}`,
        attributes: { ...(input.Attributes as Record<string, string> | undefined) },
        messages: new Map(),
        waiters: new Set(),
      };
      queues.set(name, queue);
      byArn.set(queue.arn, queue);
      return { QueueUrl: queue.url };
    },
    GetQueueUrl(input) {
      return { QueueUrl: queueAt(`/${input.QueueName}`).url };
    },
    GetQueueAttributes(input) {
      const queue = queueAt(input.QueueUrl);
      const names = (input.AttributeNames as string[] | undefined) ?? [];
      const all = attributesOf(queue);
      const wanted = names.includes("All") ? Object.keys(all) : names;
      return {
        Attributes: Object.fromEntries(
          wanted.filter((name) => all[name] !== undefined).map((name) => [name, all[name]]),
        ),
      };
    },
    SendMessage(input) {
      return send(queueAt(input.QueueUrl), input);
    },
    SendMessageBatch(input) {
      const queue = queueAt(input.QueueUrl);
      const entries = (input.Entries as Record<string, unknown>[] | undefined) ?? [];
      return {
        Successful: entries.map((entry) => ({ Id: entry.Id, ...send(queue, entry) })),
        Failed: [],
      };
    },
    async ReceiveMessage(input) {
      const queue = queueAt(input.QueueUrl);
      const max = Math.min(10, Math.max(1, Number(input.MaxNumberOfMessages ?? 1)));
      const waitS = Math.min(
        MAX_WAIT_S,
        Number(input.WaitTimeSeconds ?? queue.attributes.ReceiveMessageWaitTimeSeconds ?? 0),
      );
      const visibilityS = Number(
        input.VisibilityTimeout ?? queue.attributes.VisibilityTimeout ?? DEFAULT_VISIBILITY_S,
      );
      const deadline = Date.now() + waitS * 1000;
      let got = take(queue, max, visibilityS);
      while (got.length === 0 && Date.now() < deadline) {
        await nextChance(queue, deadline);
        got = take(queue, max, visibilityS);
      }
      return got.length > 0 ? { Messages: got } : {};
    },
    DeleteMessage(input) {
      remove(queueAt(input.QueueUrl), String(input.ReceiptHandle ?? ""));
      return {};
    },
    DeleteMessageBatch(input) {
      const queue = queueAt(input.QueueUrl);
      return batch(input, (entry) => remove(queue, String(entry.ReceiptHandle ?? "")));
    },
    ChangeMessageVisibility(input) {
      changeVisibility(
        queueAt(input.QueueUrl),
        String(input.ReceiptHandle ?? ""),
        Number(input.VisibilityTimeout ?? 0),
      );
      return {};
    },
    ChangeMessageVisibilityBatch(input) {
      const queue = queueAt(input.QueueUrl);
      return batch(input, (entry) =>
        changeVisibility(
          queue,
          String(entry.ReceiptHandle ?? ""),
          Number(entry.VisibilityTimeout ?? 0),
        ));
    },
  };

  const send = (queue: Queue, input: Record<string, unknown>) => {
    const body = String(input.MessageBody ?? "");
    const delayS = Number(input.DelaySeconds ?? queue.attributes.DelaySeconds ?? 0);
    const now = Date.now();
    const message: Message = {
      id: crypto.randomUUID(),
      body,
      md5: md5(body),
      sentAt: now,
      visibleAt: now + delayS * 1000,
      receiveCount: 0,
    };
    queue.messages.set(message.id, message);
    wake(queue);
    return { MessageId: message.id, MD5OfMessageBody: message.md5 };
  };

  /** Up to `max` visible messages, hidden for `visibilityS`; past the redrive limit, dead-lettered. */
  const take = (queue: Queue, max: number, visibilityS: number) => {
    const now = Date.now();
    const limit = redriveOf(queue);
    const taken = [];
    for (const message of queue.messages.values()) {
      if (taken.length >= max) break;
      if (message.visibleAt > now) continue;
      if (limit && message.receiveCount >= limit.maxReceiveCount) {
        queue.messages.delete(message.id);
        const dlq = byArn.get(limit.deadLetterTargetArn);
        if (dlq) {
          // A dead letter keeps its body and receive count, as SQS's move does.
          dlq.messages.set(message.id, { ...message, visibleAt: now, receipt: undefined });
          wake(dlq);
        }
        continue;
      }
      message.receiveCount++;
      message.firstReceivedAt ??= now;
      message.visibleAt = now + visibilityS * 1000;
      message.receipt = `${message.id}#${message.receiveCount}#${crypto.randomUUID()}`;
      taken.push({
        MessageId: message.id,
        ReceiptHandle: message.receipt,
        MD5OfBody: message.md5,
        Body: message.body,
        Attributes: {
          ApproximateReceiveCount: String(message.receiveCount),
          SentTimestamp: String(message.sentAt),
          ApproximateFirstReceiveTimestamp: String(message.firstReceivedAt),
        },
      });
    }
    return taken;
  };

  const remove = (queue: Queue, receipt: string) => {
    if (!receipt.includes("#")) {
      throw new SqsError("ReceiptHandleIsInvalid", `The receipt handle is not valid: ${receipt}`);
    }
    // SQS deletes a message by any of its receipts, and ignores one already gone.
    queue.messages.delete(receipt.split("#")[0]);
  };

  const changeVisibility = (queue: Queue, receipt: string, seconds: number) => {
    const message = queue.messages.get(receipt.split("#")[0]);
    if (!message || message.receipt !== receipt || message.visibleAt <= Date.now()) {
      throw new SqsError(
        "MessageNotInflight",
        `Message is not in flight for receipt ${receipt}`,
        "AWS.SimpleQueueService.MessageNotInflight",
      );
    }
    message.visibleAt = Date.now() + seconds * 1000;
    if (seconds === 0) wake(queue);
  };

  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async function answer(req) {
      const action = (req.headers.get("x-amz-target") ?? "").replace(/^AmazonSQS\./, "");
      requests.set(action, (requests.get(action) ?? 0) + 1);
      try {
        const handler = actions[action];
        if (req.method !== "POST" || !handler) {
          throw new SqsError(
            "InvalidAction",
            `The action ${action} is not valid for this endpoint`,
          );
        }
        const input = await req.json() as Record<string, unknown>;
        return json(200, await handler(input) ?? {});
      } catch (err) {
        const error = err instanceof SqsError
          ? err
          : new SqsError("InternalError", (err as Error).message);
        return json(error.code === "InternalError" ? 500 : 400, {
          __type: `com.amazonaws.sqs#${error.code}`,
          message: error.message,
        }, { "x-amzn-query-error": `${error.queryCode};Sender` });
      }
    },
  );
  origin = `http://127.0.0.1:${server.addr.port}`;
  return {
    url: origin,
    requests,
    async stop() {
      for (const queue of queues.values()) wake(queue);
      await server.shutdown();
    },
  };
}

/** A stand-in running in a process of its own. */
export interface FastSqs {
  readonly url: string;
  readonly pid: number;
  stop(): Promise<void>;
}

/** Starts the stand-in in a child `deno` process and waits until it listens. */
export async function startFastSqs(): Promise<FastSqs> {
  const child = new Deno.Command("deno", {
    args: ["run", "--allow-net=127.0.0.1", new URL(import.meta.url).pathname],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) {
      await child.status;
      throw new Error("Cannot start the fast SQS stand-in: it exited before listening");
    }
    text += value;
  }
  reader.releaseLock();
  const url = (JSON.parse(text.split("\n")[0]) as { url: string }).url;
  const drained = child.stdout.pipeTo(new WritableStream()).catch(() => {});
  return {
    url,
    pid: child.pid,
    async stop() {
      await child.stdin.close().catch(() => {});
      await child.status;
      await drained;
    },
  };
}

function attributesOf(queue: Queue): Record<string, string | undefined> {
  const now = Date.now();
  let visible = 0;
  let inFlight = 0;
  let delayed = 0;
  for (const message of queue.messages.values()) {
    if (message.visibleAt <= now) visible++;
    else if (message.receiveCount > 0) inFlight++;
    else delayed++;
  }
  return {
    ...queue.attributes,
    QueueArn: queue.arn,
    VisibilityTimeout: queue.attributes.VisibilityTimeout ?? String(DEFAULT_VISIBILITY_S),
    ApproximateNumberOfMessages: String(visible),
    ApproximateNumberOfMessagesNotVisible: String(inFlight),
    ApproximateNumberOfMessagesDelayed: String(delayed),
  };
}

function redriveOf(
  queue: Queue,
): { maxReceiveCount: number; deadLetterTargetArn: string } | undefined {
  const policy = queue.attributes.RedrivePolicy;
  if (!policy) return undefined;
  const parsed = JSON.parse(policy);
  return {
    maxReceiveCount: Number(parsed.maxReceiveCount),
    deadLetterTargetArn: parsed.deadLetterTargetArn,
  };
}

/** Resolves when a message may have become visible: sent, put back, or hidden until before `deadline`. */
function nextChance(queue: Queue, deadline: number): Promise<void> {
  let soonest = deadline;
  const now = Date.now();
  for (const message of queue.messages.values()) {
    if (message.visibleAt > now && message.visibleAt < soonest) soonest = message.visibleAt;
  }
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      queue.waiters.delete(done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, soonest - now));
    queue.waiters.add(done);
  });
}

function wake(queue: Queue): void {
  for (const waiter of [...queue.waiters]) waiter();
}

function batch(
  input: Record<string, unknown>,
  each: (entry: Record<string, unknown>) => void,
) {
  const successful: { Id: unknown }[] = [];
  const failed: { Id: unknown; Code: string; Message: string; SenderFault: boolean }[] = [];
  for (const entry of (input.Entries as Record<string, unknown>[] | undefined) ?? []) {
    try {
      each(entry);
      successful.push({ Id: entry.Id });
    } catch (err) {
      const code = err instanceof SqsError ? err.code : "InternalError";
      failed.push({ Id: entry.Id, Code: code, Message: (err as Error).message, SenderFault: true });
    }
  }
  return { Successful: successful, Failed: failed };
}

function md5(text: string): string {
  return createHash("md5").update(text).digest("hex");
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/x-amz-json-1.0", ...headers },
  });
}

if (import.meta.main) {
  const server = serveFastSqs();
  console.log(JSON.stringify({ url: server.url }));
  // Ends with the bench: its end closes this process's standard input.
  for await (const _ of Deno.stdin.readable) {
    // nothing is sent on it
  }
  await server.stop();
}
