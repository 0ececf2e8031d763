/** Wires the store, the queue and the backends for the configured backend kind. */
import { type Backend, backendsFromConfig } from "./backends.ts";
import type { Config } from "./config.ts";
import type { JobQueue } from "./queue.ts";
import type { Store } from "./store.ts";
import { createAwsClients } from "./aws/clients.ts";
import { DynamoStore } from "./aws/dynamo_store.ts";
import { SqsJobQueue } from "./aws/sqs_queue.ts";
import { KvStore } from "./embedded/kv_store.ts";
import { KvJobQueue } from "./embedded/kv_queue.ts";

/** Everything the front door and the worker share. */
export interface Services {
  config: Config;
  store: Store;
  queue: JobQueue;
  backends: readonly Backend[];
  /** Releases clients and files. */
  close(): void;
}

/**
 * Builds the services for a configuration. The AWS backend opens no
 * connection until first used; the embedded one opens its data file.
 */
export async function openServices(config: Config): Promise<Services> {
  const backends = backendsFromConfig(config);
  if (config.backend === "embedded") {
    await Deno.mkdir(config.dataDir, { recursive: true });
    const kv = await Deno.openKv(`${config.dataDir}/gateway.sqlite3`);
    return {
      config,
      store: new KvStore(kv),
      queue: new KvJobQueue(kv, { maxReceiveCount: config.maxAttempts }),
      backends,
      close: () => kv.close(),
    };
  }
  const clients = createAwsClients(config);
  return {
    config,
    store: new DynamoStore(clients.documents, {
      conversations: config.conversationsTable,
      jobs: config.jobsTable,
    }),
    queue: new SqsJobQueue(clients.sqs, {
      priority: config.priorityQueue,
      default: config.jobsQueue,
    }),
    backends,
    close: () => clients.destroy(),
  };
}
