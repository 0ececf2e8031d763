/** The services in a local Deno KV file. */
import { backendsFromConfig } from "../../core/backends.ts";
import type { Config } from "../../core/config.ts";
import type { Services } from "../../core/services.ts";
import { FileBlobStore } from "./file_blobs.ts";
import { KvKeyCounters } from "./kv_counters.ts";
import { KvJobQueue } from "./kv_queue.ts";
import { KvStore } from "./kv_store.ts";

/** How often expired blobs are looked for, besides at start-up. */
const BLOB_EXPIRY_EVERY_MS = 3600 * 1000;
/** The database and its blobs hold what clients sent: for the gateway's user only, whatever the umask. */
const FILE_MODE = 0o600;
const FOLDER_MODE = 0o700;

/**
 * Opens (or creates) `DATA_DIR/gateway.sqlite3` and builds the services on it;
 * deletes the blobs under `DATA_DIR/blobs` past their time now and every hour.
 * `DATA_DIR`, its `blobs` folder and the database's files are made private to
 * the user the gateway runs as (0700 and 0600).
 */
export async function openEmbeddedServices(config: Config): Promise<Services> {
  const database = `${config.dataDir}/gateway.sqlite3`;
  const blobDir = `${config.dataDir}/blobs`;
  await Deno.mkdir(blobDir, { recursive: true, mode: FOLDER_MODE });
  await makePrivate(config.dataDir, FOLDER_MODE);
  await makePrivate(blobDir, FOLDER_MODE);
  // SQLite creates its database with 0644 less the umask, and its -wal and -shm files with the
  // database's mode: the file made first, private, decides them all.
  await Deno.writeFile(database, new Uint8Array(), { createNew: true, mode: FILE_MODE })
    .catch((err) => {
      if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
    });
  await makePrivate(database, FILE_MODE);
  const kv = await Deno.openKv(database);
  // Those of an earlier run keep the mode they were made with.
  for (const file of [`${database}-wal`, `${database}-shm`]) await makePrivate(file, FILE_MODE);
  const queue = new KvJobQueue(kv, { maxReceiveCount: config.maxAttempts });
  if (config.llmBackends.length > 0) await queue.adoptLegacyMessages(config.llmBackends[0].name);
  const blobs = new FileBlobStore(blobDir, {
    ttlDays: config.blobTtlDays,
    ownerMaxBytes: config.blobKeyMaxBytes,
  });
  await blobs.removeExpired();
  // A failure here is tried again the next hour; one at start-up stops the start, loudly.
  const expiry = setInterval(() => blobs.removeExpired().catch(() => {}), BLOB_EXPIRY_EVERY_MS);
  Deno.unrefTimer(expiry);
  return {
    config,
    store: new KvStore(kv),
    queue,
    blobs,
    counters: new KvKeyCounters(kv),
    backends: backendsFromConfig(config),
    close: () => {
      clearInterval(expiry);
      kv.close();
    },
  };
}

/**
 * Sets a file's or folder's mode, if it is there and the gateway's user owns
 * it (a `DATA_DIR` another user made is theirs to set); Windows has no modes.
 */
async function makePrivate(path: string, mode: number): Promise<void> {
  if (Deno.build.os === "windows") return;
  await Deno.chmod(path, mode).catch((err) => {
    if (!(err instanceof Deno.errors.NotFound || err instanceof Deno.errors.PermissionDenied)) {
      throw err;
    }
  });
}
