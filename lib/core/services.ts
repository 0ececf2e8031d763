/** What the front door and the worker are given: storage, queue and backends, whichever backs them. */
import type { Backend } from "./backends.ts";
import type { BlobStore } from "./blobs.ts";
import type { Config } from "./config.ts";
import type { KeyCounters } from "./key_counters.ts";
import type { JobQueue } from "./queue.ts";
import type { Store } from "./store.ts";

/** Everything the front door and the worker share. */
export interface Services {
  config: Config;
  store: Store;
  queue: JobQueue;
  /** Where base64 images and long chats are kept, outside the records. */
  blobs: BlobStore;
  /** Each API key's counters for its limits, and its usage per day. */
  counters: KeyCounters;
  backends: readonly Backend[];
  /** Releases clients and files. */
  close(): void;
}
