/** The services on DynamoDB, SQS and S3. */
import { backendsFromConfig } from "../../core/backends.ts";
import type { Config } from "../../core/config.ts";
import type { Services } from "../../core/services.ts";
import { type AwsClients, createAwsClients } from "./clients.ts";
import { DynamoBlobBytes } from "./dynamo_blob_bytes.ts";
import { DynamoKeyCounters } from "./dynamo_counters.ts";
import { DynamoStore } from "./dynamo_store.ts";
import { S3BlobStore } from "./s3_blobs.ts";
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
  const queue = new SqsJobQueue(clients.sqs, {
    priority: config.priorityQueue,
    default: config.jobsQueue,
  });
  const backends = backendsFromConfig(config);
  return {
    config,
    store: new DynamoStore(clients.documents, {
      conversations: config.conversationsTable,
      jobs: config.jobsTable,
    }),
    queue,
    blobs: new S3BlobStore(clients.s3, {
      bucket: config.blobBucket,
      // The blob bucket must be this account's: the queues' URLs name it.
      expectedOwner: () => queue.ownerAccount({ backend: backends[0].name, lane: "default" }),
      byteCount: new DynamoBlobBytes(clients.documents, {
        table: config.jobsTable,
        limit: config.blobKeyMaxBytes,
        keepDays: config.blobTtlDays,
      }),
    }),
    counters: new DynamoKeyCounters(clients.documents, config.jobsTable),
    backends,
    close: () => clients.destroy(),
  };
}
