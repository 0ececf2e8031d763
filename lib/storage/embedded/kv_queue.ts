/**
 * The job queue in a local Deno KV file, with SQS's semantics: messages hidden
 * while in flight, a receive count, and a dead-letter lane past the limit.
 * Deno KV's own queue does not deliver promptly across processes, so this one
 * is meant for a single process: long polls are woken in-process.
 *
 * Fair by construction: each lane keeps every owner's messages apart
 * (`["queue", backend, lane, owner, time, n, id]`), and a receive takes them
 * round-robin by owner, oldest first within each, starting after the owner
 * served last. A key that floods a lane waits behind itself, not the others.
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
 * owner, …]`, and a dead-letter queue for each under `["dead", backend, lane, …]`.
 */
export class KvJobQueue implements JobQueue {
  #kv: Deno.Kv;
  #maxReceiveCount: number;
  #wake = new EventTarget();
  #sequence = 0;
  /** Per dead-letter queue, the key after which the next read goes on. */
  #deadLetterCursor = new Map<string, Deno.KvKey>();
  /** Per queue, the owner whose message was taken last: the next receive starts after it. */
  #lastOwner = new Map<string, string>();

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
    const key = [
      ...prefix("queue", { backend: ticket.route, lane }),
      ticket.owner ?? "",
      now,
      this.#sequence++,
      crypto.randomUUID(),
    ];
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

  /** Puts the message back for `seconds`, its delivery uncounted, under a receipt its holder no longer has. */
  async defer(message: ReceivedJob, seconds: number): Promise<void> {
    const { key, token } = parseReceipt(message.receipt);
    const entry = await this.#kv.get<Entry>(key);
    if (entry.value?.receipt !== token) return;
    const put: Entry = {
      ...entry.value,
      receiveCount: Math.max(0, entry.value.receiveCount - 1),
      visibleAt: Date.now() + Math.max(0, seconds) * 1000,
      receipt: "",
    };
    await this.#kv.atomic().check(entry).set(key, put).commit();
    if (seconds <= 0) this.#wake.dispatchEvent(new Event(eventName(message)));
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
   * Moves messages of earlier layouts to this one, so an upgrade loses none:
   * those from before each backend had its own queues (`["queue", lane, …]`),
   * and those from before each owner had its own place in a lane
   * (`["queue", backend, lane, time, …]`). A line check of the first layout
   * names no backend; any backend's worker can run it, so it goes to
   * `fallbackBackend`. Returns how many moved.
   */
  async adoptLegacyMessages(fallbackBackend: string): Promise<number> {
    let moved = 0;
    for (const kind of ["queue", "dead"] as const) {
      for await (const entry of this.#kv.list<Entry>({ prefix: [kind] })) {
        const { key, value } = entry;
        const owner = value.ticket.owner ?? "";
        let target: Deno.KvKey | undefined;
        let ticket = value.ticket;
        if (key.length === 5 && typeof key[2] === "number") {
          const backend = value.ticket.route || fallbackBackend;
          ticket = { ...value.ticket, route: backend };
          target = [kind, backend, key[1], owner, ...key.slice(2)];
        } else if (key.length === 6 && typeof key[3] === "number") {
          target = [kind, key[1], key[2], owner, ...key.slice(3)];
        }
        if (!target) continue;
        const result = await this.#kv.atomic().check(entry).delete(key)
          .set(target, { ...value, ticket }).commit();
        if (result.ok) moved++;
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
      const owner = entry.value.ticket.owner ?? "";
      const key = [...prefix("queue", queue), owner, now, this.#sequence++, crypto.randomUUID()];
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

  /**
   * Takes up to `maxMessages` visible messages, one owner's at a time in turn
   * (see the top of this file), moving those past the limit to the dead lane.
   */
  async #take(queue: QueueRef, options: ReceiveOptions) {
    const taken: ReceivedJob[] = [];
    let nextVisibleAt: number | undefined;
    const now = Date.now();
    const base = prefix("queue", queue);
    const name = eventName(queue);
    const owners = await this.#ownersIn(base);
    // Round-robin: the owner after the one served last goes first.
    const last = this.#lastOwner.get(name);
    const split = last === undefined ? 0 : owners.findIndex((o) => o > last);
    const turn = split < 0 ? owners : [...owners.slice(split), ...owners.slice(0, split)];
    const lines = turn.map((owner) => ({
      owner,
      entries: this.#kv.list<Entry>({ prefix: [...base, owner] })[Symbol.asyncIterator](),
    }));
    while (lines.length > 0 && taken.length < options.maxMessages) {
      for (let i = 0; i < lines.length && taken.length < options.maxMessages;) {
        const line = lines[i];
        const next = await this.#nextVisible(line.entries, now, (at) => {
          nextVisibleAt = Math.min(nextVisibleAt ?? Infinity, at);
        });
        if (!next) {
          lines.splice(i, 1);
          continue;
        }
        const message = await this.#claim(next, queue, now, options.visibilitySeconds);
        if (message) {
          taken.push(message);
          this.#lastOwner.set(name, line.owner);
        }
        i++;
      }
    }
    return { taken, nextVisibleAt };
  }

  /** The owners with messages in a lane: one short read per owner, however many messages each has. */
  async #ownersIn(base: Deno.KvKey): Promise<string[]> {
    const owners: string[] = [];
    let start: Deno.KvKey | undefined;
    while (true) {
      const selector = start ? { prefix: base, start } : { prefix: base };
      const first = await this.#kv.list<Entry>(selector, { limit: 1 }).next();
      if (first.done) return owners;
      const owner = String(first.value.key[base.length]);
      owners.push(owner);
      // Past every key of this owner: after its numbers come booleans, in KV's order of types.
      start = [...base, owner, false];
    }
  }

  /**
   * An owner's next message that may be received now, moving any past its
   * deliveries to the dead lane; tells `later` when a hidden one shows again.
   */
  async #nextVisible(
    entries: AsyncIterator<Deno.KvEntry<Entry>>,
    now: number,
    later: (visibleAt: number) => void,
  ): Promise<Deno.KvEntry<Entry> | undefined> {
    while (true) {
      const next = await entries.next();
      if (next.done) return undefined;
      const entry = next.value;
      if (entry.value.visibleAt > now) {
        later(entry.value.visibleAt);
        continue;
      }
      if (entry.value.receiveCount >= this.#maxReceiveCount) {
        await this.#moveToDeadLane(entry);
        continue;
      }
      return entry;
    }
  }

  /** Takes a visible message for a receiver; undefined when another receiver took it first. */
  async #claim(
    entry: Deno.KvEntry<Entry>,
    queue: QueueRef,
    now: number,
    visibilitySeconds: number,
  ): Promise<ReceivedJob | undefined> {
    const next: Entry = {
      ...entry.value,
      receiveCount: entry.value.receiveCount + 1,
      visibleAt: now + visibilitySeconds * 1000,
      receipt: crypto.randomUUID(),
    };
    if (!(await this.#kv.atomic().check(entry).set(entry.key, next).commit()).ok) return undefined;
    return {
      backend: queue.backend,
      lane: queue.lane,
      ticket: next.ticket,
      receiveCount: next.receiveCount,
      receipt: JSON.stringify({ key: entry.key, token: next.receipt } satisfies Receipt),
    };
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
