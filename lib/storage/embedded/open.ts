/** The services in a local Deno KV file. */
import { backendsFromConfig } from "../../core/backends.ts";
import type { Config } from "../../core/config.ts";
import type { Services } from "../../core/services.ts";
import { FileBlobStore } from "./file_blobs.ts";
import { KvJobQueue } from "./kv_queue.ts";
import { KvStore } from "./kv_store.ts";

/** How often blobs past `BLOB_TTL_DAYS` are looked for, besides at start-up. */
const BLOB_EXPIRY_EVERY_MS = 3600 * 1000;

/**
 * Opens (or creates) `DATA_DIR/gateway.sqlite3` and builds the services on it;
 * deletes the blobs under `DATA_DIR/blobs` past `BLOB_TTL_DAYS` now and every hour.
 */
export async function openEmbeddedServices(config: Config): Promise<Services> {
  await Deno.mkdir(config.dataDir, { recursive: true });
  const kv = await Deno.openKv(`${config.dataDir}/gateway.sqlite3`);
  const queue = new KvJobQueue(kv, { maxReceiveCount: config.maxAttempts });
  if (config.llmBackends.length > 0) await queue.adoptLegacyMessages(config.llmBackends[0].name);
  const blobs = new FileBlobStore(`${config.dataDir}/blobs`, { ttlDays: config.blobTtlDays });
  await blobs.removeExpired();
  // A failure here is tried again the next hour; one at start-up stops the start, loudly.
  const expiry = setInterval(() => blobs.removeExpired().catch(() => {}), BLOB_EXPIRY_EVERY_MS);
  Deno.unrefTimer(expiry);
  return {
    config,
    store: new KvStore(kv),
    queue,
    blobs,
    backends: backendsFromConfig(config),
    close: () => {
      clearInterval(expiry);
      kv.close();
    },
  };
}
