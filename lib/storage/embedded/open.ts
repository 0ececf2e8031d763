/** The services in a local Deno KV file. */
import { backendsFromConfig } from "../../core/backends.ts";
import type { Config } from "../../core/config.ts";
import type { Services } from "../../core/services.ts";
import { FileBlobStore } from "./file_blobs.ts";
import { KvJobQueue } from "./kv_queue.ts";
import { KvStore } from "./kv_store.ts";

/** Opens (or creates) `DATA_DIR/gateway.sqlite3` and builds the services on it. */
export async function openEmbeddedServices(config: Config): Promise<Services> {
  await Deno.mkdir(config.dataDir, { recursive: true });
  const kv = await Deno.openKv(`${config.dataDir}/gateway.sqlite3`);
  const queue = new KvJobQueue(kv, { maxReceiveCount: config.maxAttempts });
  if (config.llmBackends.length > 0) await queue.adoptLegacyMessages(config.llmBackends[0].name);
  return {
    config,
    store: new KvStore(kv),
    queue,
    blobs: new FileBlobStore(`${config.dataDir}/blobs`),
    backends: backendsFromConfig(config),
    close: () => kv.close(),
  };
}
