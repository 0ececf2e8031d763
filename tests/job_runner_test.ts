/**
 * runJob() ends every run through one exit, whose order is the rule that
 * keeps at-least-once delivery safe: hand the conversation's turn on, stop
 * holding the message, then settle it. Each outcome is checked on a real
 * embedded store and queue, with every call recorded in order.
 */
import assert from "node:assert/strict";
import { silentLogger } from "../lib/core/log.ts";
import type { ReceivedJob } from "../lib/core/queue.ts";
import type { Services } from "../lib/core/services.ts";
import { retryFailedJob } from "../lib/core/retry.ts";
import { RecordTooLargeError } from "../lib/core/store.ts";
import { ENDINGS, runJob, type RunOutcome } from "../lib/worker/job_runner.ts";
import { Semaphore } from "../lib/worker/semaphore.ts";
import { startTestGateway, type TestGateway, type TestGatewayOptions } from "./support/gateway.ts";
import { eventually } from "./support/wait.ts";

/** The calls that matter for the order: hand-on, stop holding, settle. */
const WATCHED = new Set([
  "store.passTurn",
  "store.completeJob",
  "store.failJob",
  "store.retryJob",
  "queue.delete",
  "queue.deadLetter",
  "queue.returnAfter",
]);

/** The object, with each watched method call written to `log` before it runs. */
function recorded<T extends object>(target: T, label: string, log: string[]): T {
  return new Proxy(target, {
    get(inner, property) {
      const value = Reflect.get(inner, property);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        const name = `${label}.${String(property)}`;
        if (WATCHED.has(name)) {
          log.push(name === "queue.returnAfter" ? `${name}(${args[1]})` : name);
        }
        return value.apply(inner, args);
      };
    },
  });
}

/** Runs the next message of the default lane, recording the calls in order. */
async function runNext(
  gateway: TestGateway,
  options: { signal?: AbortSignal; maxReceiveCount?: number; message?: ReceivedJob } = {},
): Promise<{ outcome: RunOutcome; calls: string[] }> {
  const calls: string[] = [];
  const services: Services = {
    ...gateway.services,
    store: recorded(gateway.services.store, "store", calls),
    queue: recorded(gateway.services.queue, "queue", calls),
  };
  const message = options.message ??
    (await gateway.services.queue.receive({ backend: "vllm", lane: "default" }, {
      maxMessages: 1,
      waitSeconds: 0,
      visibilitySeconds: 60,
    }))[0];
  assert.ok(message, "a message to run");
  const outcome = await runJob(message, {
    services,
    logger: silentLogger,
    maxReceiveCount: options.maxReceiveCount ?? 3,
    signal: options.signal ?? new AbortController().signal,
    stopHolding: () => calls.push("stopHolding"),
  });
  return { outcome, calls };
}

async function withGateway(
  options: TestGatewayOptions,
  fn: (gateway: TestGateway) => Promise<void>,
): Promise<void> {
  const gateway = await startTestGateway("embedded", options);
  try {
    await fn(gateway);
  } finally {
    await gateway.stop();
  }
}

Deno.test("runJob() hands the turn on, stops holding, then deletes the message of a job that succeeded", async () => {
  await withGateway({}, async (gateway) => {
    await gateway.send({ conversation_id: "c", user_message: "hi" });
    const { outcome, calls } = await runNext(gateway);
    assert.equal(outcome, "succeeded");
    assert.deepEqual(calls, ["store.completeJob", "store.passTurn", "stopHolding", "queue.delete"]);
  });
});

Deno.test("runJob() records the failure, hands the turn on, then dead-letters a job that cannot succeed", async () => {
  await withGateway(
    { vllmAnswer: () => ({ status: 400, message: "no such model" }) },
    async (gateway) => {
      await gateway.send({ conversation_id: "c", user_message: "hi" });
      const { outcome, calls } = await runNext(gateway);
      assert.equal(outcome, "failed");
      assert.deepEqual(calls, [
        "store.failJob",
        "store.passTurn",
        "stopHolding",
        "queue.deadLetter",
      ]);
    },
  );
});

Deno.test("runJob() fails a job at once, saying why, when its reply is too large for the store", async () => {
  await withGateway({}, async (gateway) => {
    const { job_id } = await gateway.send({ conversation_id: "c", user_message: "hi" });
    const store = gateway.services.store;
    gateway.services.store = new Proxy(store, {
      get(inner, property) {
        const value = Reflect.get(inner, property);
        if (property !== "completeJob") {
          return typeof value === "function" ? value.bind(inner) : value;
        }
        return () => {
          throw new RecordTooLargeError("Cannot store the reply: over the 400 KB item limit");
        };
      },
    });
    try {
      const { outcome, calls } = await runNext(gateway);
      assert.equal(outcome, "failed", "on its first delivery, not after every retry");
      assert.deepEqual(calls, [
        "store.completeJob",
        "store.failJob",
        "store.passTurn",
        "stopHolding",
        "queue.deadLetter",
      ]);
    } finally {
      gateway.services.store = store;
    }
    assert.match((await store.getJob(job_id))?.error ?? "", /Failed for good: .*400 KB/);
  });
});

Deno.test("runJob() keeps the turn and returns the message after the retry delay when another attempt may help", async () => {
  await withGateway(
    {
      env: { RETRY_DELAY_S: "7" },
      vllmAnswer: () => ({ status: 503, message: "warming up" }),
    },
    async (gateway) => {
      await gateway.send({ conversation_id: "c", user_message: "hi" });
      const { outcome, calls } = await runNext(gateway);
      assert.equal(outcome, "retrying");
      assert.deepEqual(calls, ["store.retryJob", "stopHolding", "queue.returnAfter(7)"]);
    },
  );
});

Deno.test("runJob() returns the message at once when the worker stops mid-call", async () => {
  const stopping = new AbortController();
  await withGateway(
    {
      vllmAnswer: async () => {
        stopping.abort();
        await new Promise((r) => setTimeout(r, 50));
        return { reply: "too late" };
      },
    },
    async (gateway) => {
      await gateway.send({ conversation_id: "c", user_message: "hi" });
      const { outcome, calls } = await runNext(gateway, { signal: stopping.signal });
      assert.equal(outcome, "interrupted");
      assert.deepEqual(calls, ["store.retryJob", "stopHolding", "queue.returnAfter(0)"]);
    },
  );
});

Deno.test("runJob() hands its place to the job waiting for it before storing its own reply", async () => {
  const firstAnswer = Promise.withResolvers<void>();
  await withGateway(
    {
      vllmAnswer: async (request) => {
        if (request.messages.at(-1)?.content === "first") await firstAnswer.promise;
        return { reply: "ok" };
      },
    },
    async (gateway) => {
      const events: string[] = [];
      const services: Services = {
        ...gateway.services,
        store: new Proxy(gateway.services.store, {
          get(inner, property) {
            const value = Reflect.get(inner, property);
            if (typeof value !== "function") return value;
            if (property !== "completeJob") return value.bind(inner);
            return (...args: Parameters<typeof inner.completeJob>) => {
              events.push(`reply stored: ${args[0].user_message.content}`);
              return inner.completeJob(...args);
            };
          },
        }),
      };
      const place = new Semaphore(1);
      const run = async (text: string) => {
        await gateway.send({ conversation_id: text, user_message: text });
        const [message] = await gateway.services.queue.receive(
          { backend: "vllm", lane: "default" },
          { maxMessages: 1, waitSeconds: 0, visibilitySeconds: 60 },
        );
        assert.ok(message, `the message of "${text}"`);
        return runJob(message, {
          services,
          logger: silentLogger,
          maxReceiveCount: 3,
          signal: new AbortController().signal,
          backendPlace: () => {
            events.push(`waits for a place: ${text}`);
            return place.acquire().then((release) => {
              events.push(`takes the place: ${text}`);
              return release;
            });
          },
        });
      };
      const first = run("first");
      await eventually(() => gateway.vllm.requests.length === 1, "the first job's model call");
      const second = run("second");
      await eventually(
        () => events.includes("waits for a place: second"),
        "the second job to wait for the place",
      );
      firstAnswer.resolve();
      assert.deepEqual(await Promise.all([first, second]), ["succeeded", "succeeded"]);
      assert.deepEqual(events, [
        "waits for a place: first",
        "takes the place: first",
        "waits for a place: second",
        "takes the place: second",
        "reply stored: first",
        "reply stored: second",
      ]);
    },
  );
});

Deno.test("runJob() hands the turn on again and deletes a duplicate of a finished job", async () => {
  await withGateway({}, async (gateway) => {
    await gateway.send({ conversation_id: "c", user_message: "hi" });
    const [message] = await gateway.services.queue.receive({ backend: "vllm", lane: "default" }, {
      maxMessages: 1,
      waitSeconds: 0,
      visibilitySeconds: 60,
    });
    assert.equal((await runNext(gateway, { message })).outcome, "succeeded");
    const { outcome, calls } = await runNext(gateway, { message });
    assert.equal(outcome, "duplicate");
    assert.deepEqual(calls, ["store.passTurn", "stopHolding", "queue.delete"]);
  });
});

Deno.test("runJob() deletes a line check without handing any turn on", async () => {
  await withGateway({}, async (gateway) => {
    await gateway.services.queue.send("default", {
      job_id: "j",
      conversation_id: "c",
      route: "vllm",
      line_check: true,
    });
    const { outcome, calls } = await runNext(gateway);
    assert.equal(outcome, "line_checked");
    assert.deepEqual(calls, ["stopHolding", "queue.delete"]);
  });
});

Deno.test("runJob() hands the turn on and dead-letters a message whose job has no record", async () => {
  await withGateway({}, async (gateway) => {
    await gateway.services.queue.send("default", {
      job_id: "gone",
      conversation_id: "c",
      route: "vllm",
    });
    const { outcome, calls } = await runNext(gateway);
    assert.equal(outcome, "missing");
    assert.deepEqual(calls, ["store.passTurn", "stopHolding", "queue.deadLetter"]);
  });
});

Deno.test("runJob() dead-letters an unreadable message and nothing else", async () => {
  await withGateway({}, async (gateway) => {
    await gateway.services.queue.send("default", {
      job_id: "",
      conversation_id: "",
      route: "vllm",
    });
    const { outcome, calls } = await runNext(gateway);
    assert.equal(outcome, "unreadable");
    assert.deepEqual(calls, ["stopHolding", "queue.deadLetter"]);
  });
});

Deno.test("runJob() deletes a message from before its job was retried, starting nothing", async () => {
  await withGateway({}, async (gateway) => {
    const { store, queue } = gateway.services;
    const { job_id: jobId } = await gateway.send({ conversation_id: "c", user_message: "hi" });
    const [old] = await queue.receive({ backend: "vllm", lane: "default" }, {
      maxMessages: 1,
      waitSeconds: 0,
      visibilitySeconds: 60,
    });
    // The job fails while this message is held, and an admin sends it back to run.
    await store.startJob(jobId, 60_000);
    await store.failJob(jobId, "down");
    await store.passTurn(old.ticket.conversation_id, jobId);
    assert.equal((await retryFailedJob(gateway.services, jobId))?.state, "sent");
    const { outcome, calls } = await runNext(gateway, { message: old });
    assert.equal(outcome, "stale");
    assert.deepEqual(calls, ["stopHolding", "queue.delete"]);
    const job = await store.getJob(jobId);
    assert.deepEqual([job?.status, job?.attempts, job?.generation], ["queued", 0, 1]);
    const { outcome: fresh } = await runNext(gateway);
    assert.equal(fresh, "succeeded", "the retry's own message runs it");
  });
});

Deno.test("ENDINGS hand the turn on exactly for the outcomes that end the job", () => {
  const handOn = Object.entries(ENDINGS).filter(([, e]) => e.handOn).map(([o]) => o).sort();
  assert.deepEqual(handOn, ["duplicate", "failed", "missing", "succeeded"]);
});
