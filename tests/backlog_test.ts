/**
 * The gateway's main situation: the model machine is away and jobs wait. A
 * backlog that outlasts many line-check intervals must drain with each job
 * delivered once, not echoed by the line checks and hand-overs meant to
 * rescue a lost message.
 */
import assert from "node:assert/strict";
import { sleep } from "../lib/core/sleep.ts";
import { backendTest } from "./support/gateway.ts";
import { ObservedQueue } from "./support/queue_wrappers.ts";

const CONVERSATIONS = 40;
const MESSAGES = 10;

/** Runs `task` for each item, `width` at a time. */
async function inParallel<T>(items: T[], width: number, task: (item: T) => Promise<void>) {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) await task(items[next++]);
  }));
}

backendTest(
  "a backlog that waits through several line checks drains with each job delivered once, each conversation in order",
  async (t, start) => {
    const gateway = await start({ env: { LINE_CHECK_S: "1", VISIBILITY_TIMEOUT_S: "30" } });
    const conversations = Array.from({ length: CONVERSATIONS }, (_, i) => `backlog-${i}`);
    const jobIds: string[] = [];

    await t.step(
      "400 messages wait with no worker, through four line-check intervals",
      async () => {
        await inParallel(conversations, 8, async (conversation) => {
          for (let n = 0; n < MESSAGES; n++) {
            const accepted = await gateway.send({
              conversation_id: conversation,
              user_message: `message ${n}`,
            });
            jobIds.push(accepted.job_id);
          }
        });
        // Each conversation's head was sent and recorded so: nothing for a line check to do.
        await sleep(4_000);
        const records = await gateway.jobRecords();
        assert.equal(records.length, CONVERSATIONS * MESSAGES);
        const sent = records.filter((job) => job.sent_at !== undefined).length;
        assert.equal(sent, CONVERSATIONS, "only the head of each line has been sent");
      },
    );

    await t.step("one worker drains it, each job delivered once", async () => {
      const observed = new ObservedQueue(gateway.services.queue);
      await gateway.startWorker({ queue: observed });
      for (const jobId of jobIds) {
        const job = await gateway.waitForJob(jobId, 180_000);
        assert.equal(job.status, "succeeded", JSON.stringify(job));
        assert.equal(job.attempts, 1, `job ${jobId} ran once`);
      }
      const deliveries = observed.deliveries();
      const perJob = deliveries.length / jobIds.length;
      assert.ok(
        perJob <= 1.1,
        `${deliveries.length} deliveries for ${jobIds.length} jobs (${perJob.toFixed(2)} each)`,
      );
      // The worker sends each later job once, as the job before it hands on its turn.
      const handedOn = observed.sent.filter((ticket) => !ticket.line_check).map((t) => t.job_id);
      assert.equal(new Set(handedOn).size, handedOn.length, "no job was sent twice");
      assert.equal(handedOn.length, jobIds.length - CONVERSATIONS);
    });

    await t.step("every conversation holds its 20 messages in order", async () => {
      for (const conversation of conversations) {
        const texts = (await gateway.storedMessages(conversation)).map((m) => m.content);
        assert.deepEqual(
          texts,
          Array.from({ length: MESSAGES }, (_, n) => [`message ${n}`, `vllm says: message ${n}`])
            .flat(),
          conversation,
        );
      }
    });
  },
);
