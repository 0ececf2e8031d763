/**
 * The job queue in a local Deno KV file, with SQS's semantics: messages hidden
 * while in flight, a receive count, and a dead-letter lane past the limit.
 * Deno KV's own queue does not deliver promptly across processes, so this one
 * is meant for a single process: long polls are woken in-process.
 */
import type { JobTicket } from "../../core/jobs.ts";
import type {
  DeadLetterOptions,
  JobQueue,
  Lane,
  QueueDepth,
  QueueRef,
  ReceivedJob,
  ReceiveOptions,
  RedriveResult,
  SendOptions,
} from "../../core/queue.ts";

/** One message as stored. */
interface Entry {
  ticket: JobTicket;
  receiveCount: number;
  /** Epoch ms from which the message may be received. */
  visibleAt: number;
  /** Changes on every receive, so a stale handle cannot delete a redelivered message. */
  receipt: string;
}

/** How a received message finds its entry again. */
interface Receipt {
  key: Deno.KvKey;
  token: string;
}

/** Longest sleep between scans while long-polling, for messages that become visible by time. */
const MAX_SCAN_INTERVAL_MS = 1000;
/**
 * How long a dead letter is kept: 14 days, the longest an SQS queue keeps a
 * message and what template.yaml and `deno task setup` give the dead-letter
 * queues.
 */
export const DEAD_LETTER_RETENTION_MS = 14 * 24 * 3600 * 1000;

/** Options for {@linkcode KvJobQueue}. */
export interface KvJobQueueOptions {
  /** Deliveries after which a message moves to the dead-letter lane. */
  maxReceiveCount: number;
}

/**
 * A {@linkcode JobQueue} on Deno KV: messages under `["queue", backend, lane,
 * …]`, and a dead-letter queue for each under `["dead", backend, lane, …]`.
 */
export class KvJobQueue implements JobQueue {
  #kv: Deno.Kv;
  #maxReceiveCount: number;
  #wake = new EventTarget();
  #sequence = 0;
  /** Per dead-letter queue, the key after which the next read goes on. */
  #deadLetterCursor = new Map<string, Deno.KvKey>();

  constructor(kv: Deno.Kv, options: KvJobQueueOptions) {
    this.#kv = kv;
    this.#maxReceiveCount = options.maxReceiveCount;
  }

  async send(lane: Lane, ticket: JobTicket, options: SendOptions = {}): Promise<void> {
    if (!ticket.route) {
      throw new TypeError(`Cannot send job "${ticket.job_id}": its ticket names no backend`);
    }
    // Time first, then a counter: messages are received in the order they were sent.
    const now = Date.now();
    const key = ["queue", ticket.route, lane, now, this.#sequence++, crypto.randomUUID()];
    const delayMs = Math.max(0, options.delaySeconds ?? 0) * 1000;
    const entry: Entry = {
      ticket,
      receiveCount: 0,
      visibleAt: delayMs > 0 ? now + delayMs : 0,
      receipt: "",
    };
    await this.#kv.set(key, entry);
    this.#wake.dispatchEvent(new Event(eventName({ backend: ticket.route, lane })));
  }

  async receive(queue: QueueRef, options: ReceiveOptions): Promise<ReceivedJob[]> {
    const deadline = Date.now() + options.waitSeconds * 1000;
    while (true) {
      const { taken, nextVisibleAt } = await this.#take(queue, options);
      const now = Date.now();
      if (taken.length > 0 || now >= deadline || options.signal?.aborted) return taken;
      const until = Math.min(deadline, nextVisibleAt ?? Infinity, now + MAX_SCAN_INTERVAL_MS);
      await this.#sleep(queue, until - now, options.signal);
    }
  }

  async delete(message: ReceivedJob): Promise<void> {
    const { key, token } = parseReceipt(message.receipt);
    const entry = await this.#kv.get<Entry>(key);
    if (entry.value?.receipt !== token) return;
    await this.#kv.atomic().check(entry).delete(key).commit();
  }

  async returnAfter(message: ReceivedJob, seconds: number): Promise<void> {
    const { key, token } = parseReceipt(message.receipt);
    const entry = await this.#kv.get<Entry>(key);
    if (entry.value?.receipt !== token) return;
    const visibleAt = Date.now() + seconds * 1000;
    await this.#kv.atomic().check(entry).set(key, { ...entry.value, visibleAt }).commit();
    if (seconds === 0) this.#wake.dispatchEvent(new Event(eventName(message)));
  }

  async deadLetter(message: ReceivedJob): Promise<void> {
    const { key, token } = parseReceipt(message.receipt);
    const entry = await this.#kv.get<Entry>(key);
    if (entry.value?.receipt !== token) return;
    await this.#moveToDeadLane(entry as Deno.KvEntry<Entry>);
  }

  /** Moves a message to its queue's dead lane, where it is kept for {@linkcode DEAD_LETTER_RETENTION_MS}. */
  async #moveToDeadLane(entry: Deno.KvEntry<Entry>): Promise<void> {
    await this.#kv.atomic().check(entry).delete(entry.key)
      .set(["dead", ...entry.key.slice(1)], { ...entry.value, visibleAt: 0 }, {
        expireIn: DEAD_LETTER_RETENTION_MS,
      }).commit();
  }

  maxReceiveCount(_queue: QueueRef): Promise<number | undefined> {
    return Promise.resolve(this.#maxReceiveCount);
  }

  async depth(queue: QueueRef): Promise<QueueDepth> {
    const now = Date.now();
    const depth: QueueDepth = { waiting: 0, in_flight: 0, dead: 0 };
    for await (const entry of this.#kv.list<Entry>({ prefix: prefix("queue", queue) })) {
      if (entry.value.visibleAt <= now) depth.waiting++;
      else depth.in_flight++;
    }
    for await (const _ of this.#kv.list({ prefix: prefix("dead", queue) })) depth.dead++;
    return depth;
  }

  /**
   * Reads on from where the last read of this dead-letter queue stopped, and
   * from the start again once it reaches the end: every dead letter is seen
   * within a few reads however many the queue holds, as SQS's sampling of a
   * large queue sees them all in time, not only the oldest page again and again.
   */
  async receiveDeadLetters(queue: QueueRef, options: DeadLetterOptions): Promise<JobTicket[]> {
    const tickets: JobTicket[] = [];
    const now = Date.now();
    const name = eventName(queue);
    const deadPrefix = prefix("dead", queue);
    for (const from of [this.#deadLetterCursor.get(name), undefined]) {
      // Just after the cursor: a key extended by the lowest part sorts before its next sibling.
      const selector = from
        ? { prefix: deadPrefix, start: [...from, new Uint8Array()] }
        : { prefix: deadPrefix };
      let reachedEnd = true;
      for await (const entry of this.#kv.list<Entry>(selector)) {
        if (tickets.length >= options.maxMessages) {
          reachedEnd = false;
          break;
        }
        this.#deadLetterCursor.set(name, entry.key);
        if (entry.value.visibleAt > now) continue;
        const hidden = { ...entry.value, visibleAt: now + options.hideSeconds * 1000 };
        const kept = { expireIn: DEAD_LETTER_RETENTION_MS };
        if ((await this.#kv.atomic().check(entry).set(entry.key, hidden, kept).commit()).ok) {
          tickets.push(entry.value.ticket);
        }
      }
      if (!reachedEnd) break;
      // The end: the next read starts over, and this one does if it found nothing.
      this.#deadLetterCursor.delete(name);
      if (tickets.length > 0 || !from) break;
    }
    return tickets;
  }

  /**
   * Moves messages of the layout before each backend had its own queues
   * (`["queue", lane, …]`) to their backend's queue, so an upgrade loses
   * none. A line check of that time names no backend; any backend's worker
   * can run it, so it goes to `fallbackBackend`. Returns how many moved.
   */
  async adoptLegacyMessages(fallbackBackend: string): Promise<number> {
    let moved = 0;
    for (const kind of ["queue", "dead"] as const) {
      for (const lane of ["priority", "default"]) {
        for await (const entry of this.#kv.list<Entry>({ prefix: [kind, lane] })) {
          if (typeof entry.key[2] !== "number") continue; // a backend named like a lane
          const backend = entry.value.ticket.route || fallbackBackend;
          const ticket = { ...entry.value.ticket, route: backend };
          const key = [kind, backend, ...entry.key.slice(1)];
          const result = await this.#kv.atomic().check(entry).delete(entry.key)
            .set(key, { ...entry.value, ticket }).commit();
          if (result.ok) moved++;
        }
      }
    }
    return moved;
  }

  async redriveDeadLetters(queue: QueueRef, requestedAt?: Date): Promise<RedriveResult> {
    let moved = 0;
    let left = 0;
    const now = Date.now();
    // Those there now, not those dead-lettered again while this runs. Hidden ones
    // too: here a reader (the sweep) hides dead letters only to page through them.
    const dead = await Array.fromAsync(this.#kv.list<Entry>({ prefix: prefix("dead", queue) }));
    for (const entry of dead) {
      const refused = entry.value.ticket.refused_redrive;
      if (requestedAt && refused && Date.parse(refused) >= requestedAt.getTime()) {
        left++; // the worker refused it for this very redrive
        continue;
      }
      // A new message, as SQS makes on a redrive: sent now, never delivered yet.
      const key = [...prefix("queue", queue), now, this.#sequence++, crypto.randomUUID()];
      const fresh: Entry = {
        ticket: entry.value.ticket,
        receiveCount: 0,
        visibleAt: 0,
        receipt: "",
      };
      if ((await this.#kv.atomic().check(entry).delete(entry.key).set(key, fresh).commit()).ok) {
        moved++;
      }
    }
    if (moved > 0) this.#wake.dispatchEvent(new Event(eventName(queue)));
    return { method: "dead_lane", moved, left };
  }

  /** Takes up to `maxMessages` visible messages, moving those past the limit to the dead lane. */
  async #take(queue: QueueRef, options: ReceiveOptions) {
    const taken: ReceivedJob[] = [];
    let nextVisibleAt: number | undefined;
    const now = Date.now();
    for await (const entry of this.#kv.list<Entry>({ prefix: prefix("queue", queue) })) {
      if (taken.length >= options.maxMessages) break;
      if (entry.value.visibleAt > now) {
        nextVisibleAt = Math.min(nextVisibleAt ?? Infinity, entry.value.visibleAt);
        continue;
      }
      if (entry.value.receiveCount >= this.#maxReceiveCount) {
        await this.#moveToDeadLane(entry);
        continue;
      }
      const next: Entry = {
        ...entry.value,
        receiveCount: entry.value.receiveCount + 1,
        visibleAt: now + options.visibilitySeconds * 1000,
        receipt: crypto.randomUUID(),
      };
      // A failed check means another receiver took it first: skip it.
      if (!(await this.#kv.atomic().check(entry).set(entry.key, next).commit()).ok) continue;
      taken.push({
        backend: queue.backend,
        lane: queue.lane,
        ticket: next.ticket,
        receiveCount: next.receiveCount,
        receipt: JSON.stringify({ key: entry.key, token: next.receipt } satisfies Receipt),
      });
    }
    return { taken, nextVisibleAt };
  }

  /** Waits `ms`, or less when a message is sent or released on the queue, or on abort. */
  #sleep(queue: QueueRef, ms: number, signal?: AbortSignal): Promise<void> {
    const event = eventName(queue);
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wake.removeEventListener(event, done);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      this.#wake.addEventListener(event, done);
      signal?.addEventListener("abort", done);
    });
  }
}

function prefix(kind: "queue" | "dead", queue: QueueRef): Deno.KvKey {
  return [kind, queue.backend, queue.lane];
}

function eventName(queue: QueueRef): string {
  return `${queue.backend}/${queue.lane}`;
}

function parseReceipt(receipt: string): Receipt {
  return JSON.parse(receipt) as Receipt;
}
