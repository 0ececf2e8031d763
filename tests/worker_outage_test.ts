/**
 * A queue that fails must not spin the worker: it pauses longer each time,
 * logs when the outage starts and when it ends, and is loud and slow about
 * errors that waiting will not heal.
 */
import assert from "node:assert/strict";
import { QueueDoesNotExist, SQSServiceException } from "@aws-sdk/client-sqs";
import { SqsJobQueue } from "../lib/storage/aws/sqs_queue.ts";
import { createAwsClients } from "../lib/storage/aws/clients.ts";
import { createLogger } from "../lib/core/log.ts";
import { DEFAULT_PAUSES, isLastingError, pauseAfter } from "../lib/worker/outage.ts";
import { loadConfig } from "../lib/core/config.ts";
import {
  skipWithoutAwsEmulators,
  startAwsEmulators,
  uniqueAwsEnv,
} from "./support/aws_emulators.ts";
import { backendTest } from "./support/gateway.ts";
import { ObservedQueue } from "./support/queue_wrappers.ts";

function capturedLog() {
  const lines: { level: string; message: string }[] = [];
  const logger = createLogger({ write: (line) => lines.push(JSON.parse(line)) });
  return { lines, logger };
}

Deno.test("pauseAfter() doubles from the first pause up to the longest", () => {
  const schedule = { firstMs: 1_000, maxMs: 30_000 };
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6, 7, 20].map((n) => pauseAfter(n, schedule)),
    [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000],
  );
});

Deno.test("by default a queue that is away is tried again at least every 4 s, a set-up fault every 30 s", () => {
  // So the worker takes its next job within 5 s of the queue's return, without spinning meanwhile.
  const pauses = Array.from({ length: 30 }, (_, i) => pauseAfter(i + 1, DEFAULT_PAUSES));
  assert.ok(pauses.every((ms) => ms >= 500 && ms <= 4_000), pauses.join(", "));
  assert.equal(pauses.at(-1), 4_000);
  assert.equal(DEFAULT_PAUSES.lastingMs, 30_000);
});

Deno.test("isLastingError() tells set-up faults from passing ones, as the AWS SDK shapes them", () => {
  const $metadata = (httpStatusCode: number) => ({ $metadata: { httpStatusCode } });
  // Fields past the constructor's are added as the SDK adds them, after it.
  const answer = (name: string, status: number, more: object = {}) =>
    Object.assign(new SQSServiceException({ name, $fault: "client", ...$metadata(status) }), more);
  assert.equal(
    isLastingError(new QueueDoesNotExist({ message: "gone", ...$metadata(400) })),
    true,
  );
  assert.equal(isLastingError(answer("InvalidClientTokenId", 403)), true);
  assert.equal(isLastingError(answer("UnrecognizedClientException", 400)), true);
  // Named by SQS's older code only.
  assert.equal(
    isLastingError(answer("Unknown", 400, { Code: "AWS.SimpleQueueService.NonExistentQueue" })),
    true,
  );
  // An answer the SDK cannot read (an emulator's or a proxy's page): only the status tells.
  const unreadable = (status: number) =>
    Object.assign(new SyntaxError("Unexpected token '<'"), $metadata(status));
  assert.equal(isLastingError(unreadable(403)), true);
  assert.equal(isLastingError(unreadable(503)), false);
  assert.equal(isLastingError(answer("ThrottlingException", 400)), false);
  assert.equal(
    isLastingError(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" })),
    false,
  );
  assert.equal(isLastingError("a string"), false);
});

backendTest(
  "a queue that fails pauses the worker longer each time, logs the outage twice, then the job runs",
  async (_t, start) => {
    const gateway = await start();
    const jobId =
      (await gateway.send({ conversation_id: "outage", user_message: "are you there?" })).job_id;
    const { lines, logger } = capturedLog();
    const pauses = { firstMs: 50, maxMs: 400 };
    const failing = new ObservedQueue(gateway.services.queue, { failingReceives: 6 });
    await gateway.startWorker({ queue: failing, logger, queuePauses: pauses });

    assert.equal((await gateway.waitForJob(jobId)).status, "succeeded");
    // One loop per backend: they fail together, and one failure of the queue is one pause for all.
    for (const backend of ["vllm", "ollama"]) {
      const calls = failing.receives.filter((r) => r.backend === backend);
      assert.ok(calls.length > 3, `${backend}'s loop received ${calls.length} times`);
      for (let i = 1; i < calls.length && calls[i - 1].failed; i++) {
        // Each failed receive is followed by its pause before the next one: no spinning.
        assert.ok(
          calls[i].at - calls[i - 1].at >= pauseAfter(i, pauses) - 5,
          `${backend}: receive ${i + 1} came ${
            calls[i].at - calls[i - 1].at
          } ms after receive ${i}`,
        );
      }
    }
    assert.equal(failing.receives.filter((r) => r.failed).length, 6);
    const aboutQueue = lines.filter((l) => /queue/i.test(l.message));
    assert.deepEqual(aboutQueue.map((l) => [l.level, l.message]), [
      ["warn", "The queue is unreachable; retrying with growing pauses"],
      ["info", "The queue is reachable again"],
    ]);
  },
);

backendTest(
  "an error that waiting will not heal is logged every time, with the longest pause",
  async (_t, start) => {
    const gateway = await start();
    const jobId =
      (await gateway.send({ conversation_id: "outage", user_message: "anyone?" })).job_id;
    const { lines, logger } = capturedLog();
    const missing = () =>
      Object.assign(new Error("The specified queue does not exist."), {
        name: "QueueDoesNotExist",
      });
    // Two rounds of both backends' loops failing.
    const failing = new ObservedQueue(gateway.services.queue, {
      failingReceives: 4,
      failure: missing,
    });
    await gateway.startWorker({
      queue: failing,
      logger,
      queuePauses: { firstMs: 10, maxMs: 50, lastingMs: 300 },
    });
    assert.equal((await gateway.waitForJob(jobId)).status, "succeeded");
    const errors = lines.filter((l) => l.level === "error");
    // Once per pause the loops share: a failure inside a pause another loop began is not logged again.
    assert.ok(errors.length >= 2 && errors.length <= 4, `${errors.length} error lines`);
    assert.match(errors[0].message, /Cannot use the queue: check the queue names/);
    assert.equal(failing.receives.filter((r) => r.failed).length, 4);
    for (const backend of ["vllm", "ollama"]) {
      const calls = failing.receives.filter((r) => r.backend === backend);
      for (let i = 1; i < calls.length; i++) {
        if (!calls[i - 1].failed) continue;
        const gap = calls[i].at - calls[i - 1].at;
        assert.ok(gap >= 295, `${backend}: receive ${i + 1} came ${gap} ms after a failed one`);
      }
    }
  },
);

Deno.test({
  name: "SQS's answer for a queue that does not exist counts as an error waiting will not heal",
  ignore: skipWithoutAwsEmulators(),
  async fn() {
    const emulators = await startAwsEmulators();
    const clients = createAwsClients(loadConfig(uniqueAwsEnv(emulators)));
    try {
      const queue = new SqsJobQueue(clients.sqs, { priority: "no-such-q", default: "nor-this" });
      const err = await queue.receive({ backend: "vllm", lane: "default" }, {
        maxMessages: 1,
        waitSeconds: 0,
        visibilitySeconds: 1,
      }).then(() => undefined, (err) => err);
      assert.ok(err instanceof Error, "the receive failed");
      assert.equal(isLastingError(err), true, `${err.name}: ${err.message}`);
    } finally {
      clients.destroy();
      await emulators.stop();
    }
  },
});
