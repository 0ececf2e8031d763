/** Wires the store, the queue and the backends for the configured backend kind. */
import { type Backend, backendsFromConfig } from "./backends.ts";
import type { Config } from "./config.ts";
import type { JobQueue } from "./queue.ts";
import type { Store } from "./store.ts";
import { createAwsClients } from "./aws/clients.ts";
import { DynamoStore } from "./aws/dynamo_store.ts";
import { SqsJobQueue } from "./aws/sqs_queue.ts";

/** Everything the front door and the worker share. */
export interface Services {
  config: Config;
  store: Store;
  queue: JobQueue;
  backends: readonly Backend[];
  /** Releases clients and files. */
  close(): void;
}

/** Builds the services for a configuration. Opens no connection until first used. */
export function openServices(config: Config): Services {
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
    backends: backendsFromConfig(config),
    close: () => clients.destroy(),
  };
}
