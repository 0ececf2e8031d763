/**
 * Fair shares between keys, on both stores: a key that floods a backend
 * delays its own jobs, not another key's; a key's in-flight limit holds over
 * every worker while other keys' jobs use the places it leaves; the queues
 * keep each owner's messages apart (round-robin on the embedded queue, the
 * owner as `MessageGroupId` on SQS) and put a message back uncounted.
 */
import assert from "node:assert/strict";
import { ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import { createAwsClients } from "../lib/storage/aws/clients.ts";
import { resolveQueueUrl } from "../lib/storage/aws/sqs_queue.ts";
import { queueNameFor, type QueueRef } from "../lib/core/queue.ts";
import type { JobTicket } from "../lib/core/jobs.ts";
import { messageText } from "../lib/core/messages.ts";
import { backendTest, type TestGateway } from "./support/gateway.ts";
import type { RecordedRequest } from "./support/stand_in_llm.ts";
import { eventually } from "./support/wait.ts";

const A = "sk-flooding-key";
const B = "sk-quiet-key";
const KEYS = `a:${A},b:${B}`;
const DEFAULT: QueueRef = { backend: "vllm", lane: "default" };

async function send(gateway: TestGateway, key: string, text: string): Promise<string> {
  const res = await gateway.app.request("/chat", {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify({
      conversation_id: crypto.randomUUID(),
      user_message: text,
      model: "test-text-model",
    }),
  });
  assert.equal(res.status, 202, await res.clone().text());
  return (await res.json()).job_id;
}

const textOf = (request: RecordedRequest) => messageText(request.messages.at(-1)!);

/** Replies held until released, one by one, by the text they answer. */
function gatedAnswers() {
  const gates = new Map<string, PromiseWithResolvers<void>>();
  const gate = (text: string) => {
    if (!gates.has(text)) gates.set(text, Promise.withResolvers<void>());
    return gates.get(text)!;
  };
  return {
    answer: async (request: RecordedRequest) => {
      await gate(textOf(request)).promise;
      return { reply: `done: ${textOf(request)}` };
    },
    release: (text: string) => gate(text).resolve(),
    /** Lets every reply go, so a failed test can stop its stand-in. */
    releaseAll: () => {
      for (const text of ["a1", "a2", "a3", "a4", "b1"]) gate(text).resolve();
    },
  };
}

backendTest(
  "a key that floods a backend waits behind itself: another key's job takes the next place",
  async (_t, start) => {
    const gated = gatedAnswers();
    const gateway = await start({
      env: { GATEWAY_API_KEYS: KEYS, VLLM_CONCURRENCY: "2" },
      vllmAnswer: gated.answer,
    });
    const seen = () => gateway.vllm.requests.map(textOf);
    try {
      await floodThenQuiet(gateway, gated, seen);
    } finally {
      gated.releaseAll();
    }
  },
);

async function floodThenQuiet(
  gateway: TestGateway,
  gated: ReturnType<typeof gatedAnswers>,
  seen: () => string[],
): Promise<void> {
  // As many as the worker holds (two places, two spares): all of a's are taken at once.
  // A standard SQS queue keeps no order, so the test goes by what reaches the model.
  const flood = [];
  for (const text of ["a1", "a2", "a3", "a4"]) flood.push(await send(gateway, A, text));
  await gateway.startWorker();
  await eventually(() => seen().length === 2, "two of a's jobs at the model", 30_000);
  const quiet = await send(gateway, B, "b1");
  gated.release(seen()[0]);
  await eventually(() => seen().length === 3, "a third of a's jobs at the model", 30_000);
  // b1 is taken once the first job's room is free, and waits for a place beside
  // a's last job, which has waited longer.
  await eventually(
    async () => (await gateway.services.store.getJob(quiet))?.status === "running",
    "b1 started, waiting for a place",
    30_000,
  );
  gated.release(seen()[1]);
  await eventually(() => seen().length === 4, "a fourth request at the model", 30_000);
  assert.equal(seen()[3], "b1", `b1 before a's last job, which came first: ${seen().join(", ")}`);
  gated.releaseAll();
  for (const id of [...flood, quiet]) {
    assert.equal((await gateway.waitForJob(id)).status, "succeeded");
  }
  assert.deepEqual(
    seen().toSorted(),
    ["a1", "a2", "a3", "a4", "b1"],
    "each job reached the model once",
  );
}

backendTest(
  "a key's in-flight limit holds over two workers, and other keys use the places it leaves",
  async (_t, start) => {
    const running = new Map<string, number>();
    const most = new Map<string, number>();
    let mostAtOnce = 0;
    const gateway = await start({
      env: { GATEWAY_API_KEYS: KEYS, GATEWAY_KEY_LIMITS: "a:in_flight=1", VLLM_CONCURRENCY: "3" },
      vllmAnswer: async (request) => {
        const key = textOf(request).slice(0, 1);
        running.set(key, (running.get(key) ?? 0) + 1);
        most.set(key, Math.max(most.get(key) ?? 0, running.get(key)!));
        mostAtOnce = Math.max(mostAtOnce, [...running.values()].reduce((a, b) => a + b, 0));
        await new Promise((r) => setTimeout(r, 150));
        running.set(key, running.get(key)! - 1);
        return { reply: "ok" };
      },
    });
    const ids = [];
    for (let i = 1; i <= 5; i++) ids.push(await send(gateway, A, `a${i}`));
    for (let i = 1; i <= 3; i++) ids.push(await send(gateway, B, `b${i}`));
    await gateway.startWorker();
    await gateway.startWorker();
    for (const id of ids) assert.equal((await gateway.waitForJob(id)).status, "succeeded");
    assert.equal(most.get("a"), 1, "never two of a's jobs at once, over both workers");
    assert.ok(mostAtOnce >= 2, `b's jobs ran beside a's (at most ${mostAtOnce} at once)`);
    const records = await gateway.jobRecords();
    assert.ok(
      records.every((job) => job.attempts === 1),
      "a job that waited for its key spent no attempt",
    );
  },
);

backendTest(
  "the queues keep owners apart and put a message back without counting its delivery",
  async (t, start) => {
    const gateway = await start({ env: { MAX_ATTEMPTS: "5" } });
    const { queue } = gateway.services;
    const ticket = (id: string, owner: string): JobTicket => ({
      job_id: id,
      conversation_id: id,
      route: "vllm",
      owner,
    });
    const now = { maxMessages: 10, waitSeconds: 0, visibilitySeconds: 60 };

    await t.step("a deferred message comes back with the deliveries it had before", async () => {
      await queue.send("default", ticket("once", "aaaa"));
      const [first] = await queue.receive(DEFAULT, now);
      assert.equal(first.receiveCount, 1);
      await queue.returnAfter(first, 0);
      const [second] = await queue.receive(DEFAULT, now);
      assert.equal(second.receiveCount, 2);
      await queue.defer(second, 0);
      const [third] = await queue.receive(DEFAULT, now);
      assert.equal(third.ticket.job_id, "once");
      assert.equal(third.receiveCount, 2, "the deferred delivery did not count");
      await queue.delete(third);
    });

    if (gateway.backend === "embedded") {
      await t.step(
        "the embedded queue hands out owners in turn, starting after the last served",
        async () => {
          for (const id of ["a1", "a2", "a3"]) await queue.send("default", ticket(id, "aaaa"));
          for (const id of ["b1", "b2"]) await queue.send("default", ticket(id, "bbbb"));
          const ids = async (max: number) =>
            (await queue.receive(DEFAULT, { ...now, maxMessages: max })).map((m) =>
              m.ticket.job_id
            );
          // The owner served last was "aaaa", in the step before: "bbbb" goes first.
          assert.deepEqual(await ids(3), ["b1", "a1", "b2"]);
          assert.deepEqual(await ids(3), ["a2", "a3"]);
        },
      );
    } else {
      await t.step("on SQS each message carries its owner as MessageGroupId", async () => {
        await queue.send("default", ticket("grouped", "cccc"));
        const clients = createAwsClients(gateway.config);
        try {
          const url = await resolveQueueUrl(
            clients.sqs,
            queueNameFor(gateway.config.jobsQueue, "vllm"),
          );
          const out = await clients.sqs.send(
            new ReceiveMessageCommand({
              QueueUrl: url,
              MaxNumberOfMessages: 10,
              MessageSystemAttributeNames: ["MessageGroupId"],
            }),
          );
          const grouped = (out.Messages ?? []).find((m) => m.Body?.includes("grouped"));
          assert.equal(grouped?.Attributes?.MessageGroupId, "cccc");
        } finally {
          clients.destroy();
        }
      });
    }
  },
);
