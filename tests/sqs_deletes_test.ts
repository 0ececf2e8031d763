/**
 * Deletes of jobs that end together go to SQS as one `DeleteMessageBatch`
 * (lib/storage/aws/sqs_deletes.ts): on Moto, and against a loopback server
 * that refuses one entry of a batch.
 */
import assert from "node:assert/strict";
import { CreateQueueCommand } from "@aws-sdk/client-sqs";
import type { ReceivedJob } from "../lib/core/queue.ts";
import { clientsAt } from "./support/aws_clients.ts";
import { SqsJobQueue } from "../lib/storage/aws/sqs_queue.ts";
import { skipWithoutMoto, startMoto } from "./support/moto.ts";

/** The gateway's clients for the SQS at `url`, counting their calls by operation. */
function countingClients(url: string) {
  const calls: string[] = [];
  const clients = clientsAt(url, { onCall: (operation) => calls.push(operation) });
  return { clients, calls };
}

function ticket(n: number) {
  return { job_id: `job-${n}`, conversation_id: `c-${n}`, route: "vllm" };
}

Deno.test({
  name:
    "on Moto, the deletes of jobs that end together are one call, and a lone delete is one of its own",
  ignore: skipWithoutMoto("the delete batching test on Moto"),
  async fn() {
    const moto = await startMoto();
    const { clients, calls } = countingClients(moto.url);
    try {
      await clients.sqs.send(new CreateQueueCommand({ QueueName: "jobs-vllm" }));
      const queue = new SqsJobQueue(clients.sqs, { priority: "priority", default: "jobs" });
      const ref = { backend: "vllm", lane: "default" } as const;
      for (const n of [1, 2, 3, 4]) await queue.send("default", ticket(n));
      const received: ReceivedJob[] = [];
      const deadline = Date.now() + 10_000;
      while (received.length < 4 && Date.now() < deadline) {
        received.push(
          ...await queue.receive(ref, { maxMessages: 10, waitSeconds: 1, visibilitySeconds: 30 }),
        );
      }
      assert.equal(received.length, 4, "all four received");
      calls.length = 0;

      await Promise.all(received.slice(0, 3).map((message) => queue.delete(message)));
      assert.deepEqual(calls, ["DeleteMessageBatch"]);
      await queue.delete(received[3]);
      assert.deepEqual(calls, ["DeleteMessageBatch", "DeleteMessage"]);
      assert.deepEqual(await queue.depth(ref), { waiting: 0, in_flight: 0, dead: 0 });
    } finally {
      clients.destroy();
      await moto.stop();
    }
  },
});

Deno.test("an entry SQS refuses fails its own delete only, named by SQS's code", async () => {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const { Entries } = await req.json();
    return Response.json({
      Successful: Entries.filter((e: { Id: string }) => e.Id !== "1").map((e: { Id: string }) => ({
        Id: e.Id,
      })),
      Failed: [{
        Id: "1",
        Code: "ReceiptHandleIsInvalid",
        Message: "The receipt handle is not valid",
        SenderFault: true,
      }],
    }, { headers: { "content-type": "application/x-amz-json-1.0" } });
  });
  const url = `http://127.0.0.1:${server.addr.port}`;
  const { clients, calls } = countingClients(url);
  try {
    // Queues given by URL: no lookups.
    const queue = new SqsJobQueue(clients.sqs, { priority: `${url}/p`, default: `${url}/q` });
    const message = (n: number): ReceivedJob => ({
      backend: "vllm",
      lane: "default",
      ticket: ticket(n),
      receiveCount: 1,
      receipt: `receipt-${n}`,
    });
    const results = await Promise.allSettled([0, 1, 2].map((n) => queue.delete(message(n))));
    assert.deepEqual(calls, ["DeleteMessageBatch"]);
    assert.equal(results[0].status, "fulfilled");
    assert.equal(results[2].status, "fulfilled");
    assert.equal(results[1].status, "rejected");
    const err = (results[1] as PromiseRejectedResult).reason;
    assert.equal(err.name, "ReceiptHandleIsInvalid");
    assert.match(err.message, /^Cannot delete message: ReceiptHandleIsInvalid: /);
  } finally {
    clients.destroy();
    await server.shutdown();
  }
});
