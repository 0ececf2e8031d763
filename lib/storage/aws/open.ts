/** The services on DynamoDB, SQS and S3. */
import { backendsFromConfig } from "../../core/backends.ts";
import type { Config } from "../../core/config.ts";
import type { Services } from "../../core/services.ts";
import { type AwsConnections, connectAws } from "./connections.ts";
import { DynamoStore } from "./dynamo_store.ts";
import { S3BlobStore } from "./s3_blobs.ts";
import { SqsJobQueue } from "./sqs_queue.ts";

/**
 * Builds the AWS services for a configuration; no connection is opened until
 * first used. `connections` are made from the configuration unless given
 * (the bench gives connections that count their calls).
 */
export function openAwsServices(
  config: Config,
  connections: AwsConnections = connectAws(config),
): Services {
  const queue = new SqsJobQueue(connections.sqs, {
    priority: config.priorityQueue,
    default: config.jobsQueue,
  });
  const backends = backendsFromConfig(config);
  // The blob bucket must be this account's: the queues' URLs name it.
  const blobObjects = connections.blobObjects({
    expectedBucketOwner: () => queue.ownerAccount({ backend: backends[0].name, lane: "default" }),
  });
  return {
    config,
    store: new DynamoStore(connections.documents, {
      conversations: config.conversationsTable,
      jobs: config.jobsTable,
    }),
    queue,
    blobs: new S3BlobStore(blobObjects),
    backends,
    // fetch's connections need no closing: they are pooled by the runtime and dropped when idle.
    close: () => {},
  };
}
