/**
 * AWS SDK clients built from the configuration, for setting up tables and
 * queues (provision.ts) and for tests that look into them; creating them does
 * no I/O. The store, the queue and the blobs call AWS without the SDK
 * (connections.ts).
 */
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { SQSClient } from "@aws-sdk/client-sqs";
import type { Config } from "../../core/config.ts";

/** The SDK clients for DynamoDB and SQS. */
export interface AwsClients {
  dynamo: DynamoDBClient;
  documents: DynamoDBDocumentClient;
  sqs: SQSClient;
  /** Closes the clients' sockets. */
  destroy(): void;
}

/** The settings every SDK client gets: region, credentials, attempts and timeouts. */
export function sdkClientSettings(config: Config) {
  return {
    region: config.awsRegion,
    // A copy: the SDK writes bookkeeping onto the credentials object, and the config is frozen.
    credentials: config.awsCredentials && { ...config.awsCredentials },
    maxAttempts: 3,
    // A request that hears nothing for this long is given up, so a dead network
    // cannot hang the worker; it outlasts SQS's longest poll (20 s).
    requestHandler: {
      connectionTimeout: 5_000,
      requestTimeout: 35_000,
      throwOnRequestTimeout: true,
    },
  };
}

/** Creates DynamoDB and SQS clients for the configured region and endpoints. */
export function createAwsClients(config: Config): AwsClients {
  const common = sdkClientSettings(config);
  const dynamo = new DynamoDBClient({ ...common, endpoint: config.awsEndpoints.dynamodb });
  const documents = DynamoDBDocumentClient.from(dynamo, {
    marshallOptions: { removeUndefinedValues: true },
  });
  const sqs = new SQSClient({ ...common, endpoint: config.awsEndpoints.sqs });
  return {
    dynamo,
    documents,
    sqs,
    destroy() {
      documents.destroy();
      dynamo.destroy();
      sqs.destroy();
    },
  };
}
