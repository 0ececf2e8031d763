/**
 * `Store.deleteJob` on every store: a finished job goes with what is kept
 * beside it (a long reply's pieces, its place in the owner's list), and an
 * unfinished one stays, since a worker still needs it.
 */
import assert from "node:assert/strict";
import { ScanCommand } from "@aws-sdk/lib-dynamodb";
import { createAwsClients } from "../lib/storage/aws/clients.ts";
import { newJob } from "../lib/core/jobs.ts";
import { userMessage } from "../lib/core/messages.ts";
import { backendTest } from "./support/gateway.ts";

backendTest(
  "the store deletes a finished job and what is kept beside it, and leaves an unfinished one",
  async (t, start) => {
    const gateway = await start();
    const { store } = gateway.services;
    const job = newJob({
      conversationId: "deletion",
      route: "vllm",
      model: "m",
      priority: "normal",
      userMessage: userMessage("hello"),
      ttlDays: 1,
      recordFields: { owner: "0123456789abcdef", mode: "stateless" },
    });
    await store.createJob(job);

    await t.step("a queued or running job is not deleted", async () => {
      assert.equal(await store.deleteJob(job.job_id), false);
      const claim = await store.startJob(job.job_id, 60_000);
      assert.equal(claim.state, "started");
      assert.equal(await store.deleteJob(job.job_id), false);
      assert.equal((await store.getJob(job.job_id))?.status, "running");
    });

    await t.step("a succeeded job with a long reply is deleted whole", async () => {
      const running = (await store.getJob(job.job_id))!;
      const long = "word ".repeat(20_000); // over a Deno KV value: kept in pieces beside the record
      await store.savePartial(job.job_id, { content: long.slice(0, 100) });
      await store.completeJob(running, {
        reply: { role: "assistant", content: long },
        finishReason: "stop",
        usage: { prompt_tokens: 1, completion_tokens: 20_000, total_tokens: 20_001 },
      });
      assert.equal((await store.getJob(job.job_id))?.reply, long);
      assert.equal(await store.deleteJob(job.job_id), true);
      assert.equal(await store.getJob(job.job_id), undefined);
      assert.equal(await store.deleteJob(job.job_id), false, "a second delete finds nothing");
      const listed = await store.listJobs("0123456789abcdef", { limit: 10 });
      assert.deepEqual(listed.jobs, []);
    });

    await t.step("nothing of it is left in storage", async () => {
      if (gateway.backend === "embedded") {
        const kv = await Deno.openKv(`${gateway.config.dataDir}/gateway.sqlite3`);
        try {
          const left = await Array.fromAsync(kv.list({ prefix: [] }), (entry) => entry.key);
          assert.deepEqual(left.filter((key) => key.includes(job.job_id)), []);
        } finally {
          kv.close();
        }
      } else {
        // Every item of the jobs table, the reply so far's too, not only job records.
        const clients = createAwsClients(gateway.config);
        try {
          const out = await clients.documents.send(
            new ScanCommand({ TableName: gateway.config.jobsTable }),
          );
          const ids = (out.Items ?? []).map((item) => String(item.job_id));
          assert.deepEqual(ids.filter((id) => id.includes(job.job_id)), []);
        } finally {
          clients.destroy();
        }
      }
    });
  },
);
