/**
 * The count of each key's blob bytes on DynamoDB (lib/storage/aws/dynamo_blob_bytes.ts),
 * on DynamoDB Local, which serialises concurrent writes to one item as DynamoDB does.
 */
import assert from "node:assert/strict";
import { BlobQuotaError } from "../lib/core/blobs.ts";
import { loadConfig } from "../lib/core/config.ts";
import { DynamoBlobBytes } from "../lib/storage/aws/dynamo_blob_bytes.ts";
import { createAwsClients } from "../lib/storage/aws/clients.ts";
import { provision } from "./support/gateway.ts";
import {
  skipWithoutAwsEmulators,
  startAwsEmulators,
  uniqueAwsEnv,
} from "./support/aws_emulators.ts";

const DAY_MS = 86_400_000;

Deno.test({
  name: "a key's blob bytes are counted by day, refused past the limit, and forgotten once expired",
  ignore: skipWithoutAwsEmulators(),
  async fn(t) {
    const emulators = await startAwsEmulators();
    const config = loadConfig(uniqueAwsEnv(emulators));
    await provision(config);
    const clients = createAwsClients(config);
    const count = new DynamoBlobBytes(clients.documents, {
      table: config.jobsTable,
      limit: 1000,
      keepDays: 3,
    });
    const start = Date.parse("2026-12-01T12:00:00Z");
    try {
      await t.step("bytes add up to the limit, and the next byte is refused", async () => {
        await count.add("owner-a", 600, start);
        await count.add("owner-a", 400, start + DAY_MS);
        const refused = await count.add("owner-a", 1, start + DAY_MS).catch((e) => e);
        assert.ok(refused instanceof BlobQuotaError, String(refused));
        assert.deepEqual([refused.held, refused.adding, refused.limit], [1000, 1, 1000]);
      });

      await t.step("another key has its own count", async () => {
        await count.add("owner-b", 1000, start);
      });

      await t.step("a day's bytes leave the count once its blobs have expired", async () => {
        // Blobs expire keepDays after they were written, rounded up a day by S3: day 1 is gone on day 6.
        const refused = await count.add("owner-a", 500, start + 4 * DAY_MS).catch((e) => e);
        assert.ok(refused instanceof BlobQuotaError, "day 1's 600 bytes still count on day 5");
        await count.add("owner-a", 500, start + 5 * DAY_MS);
      });

      await t.step("writers at once never take the last room twice", async () => {
        const results = await Promise.allSettled(
          Array.from({ length: 8 }, () => count.add("owner-c", 300, start)),
        );
        const counted = results.filter((r) => r.status === "fulfilled").length;
        assert.equal(counted, 3, "three of 300 fit in 1000");
        for (const r of results) {
          if (r.status === "rejected") assert.ok(r.reason instanceof BlobQuotaError, r.reason);
        }
      });
    } finally {
      clients.destroy();
      await emulators.stop();
    }
  },
});
