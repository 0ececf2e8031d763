/** The services on DynamoDB and SQS. */
import { backendsFromConfig } from "../../core/backends.ts";
import type { Config } from "../../core/config.ts";
import type { Services } from "../../core/services.ts";
import { type AwsClients, createAwsClients } from "./clients.ts";
import { DynamoStore } from "./dynamo_store.ts";
import { SqsJobQueue } from "./sqs_queue.ts";

/**
 * Builds the AWS services for a configuration; no connection is opened until
 * first used. `clients` are made from the configuration unless given (the
 * bench gives clients that count their calls); closing the services closes them.
 */
export function openAwsServices(
  config: Config,
  clients: AwsClients = createAwsClients(config),
): Services {
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
