/** AWS SDK clients built from the configuration; creating them does no I/O. */
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { S3Client } from "@aws-sdk/client-s3";
import { SQSClient } from "@aws-sdk/client-sqs";
import type { Config } from "../../core/config.ts";

/** The clients the AWS store and queue use. */
export interface AwsClients {
  dynamo: DynamoDBClient;
  documents: DynamoDBDocumentClient;
  sqs: SQSClient;
  s3: S3Client;
  /** Closes the clients' sockets. */
  destroy(): void;
}

/** Creates DynamoDB, SQS and S3 clients for the configured region and endpoints. */
export function createAwsClients(config: Config): AwsClients {
  const common = {
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
  const dynamo = new DynamoDBClient({ ...common, endpoint: config.awsEndpoints.dynamodb });
  const documents = DynamoDBDocumentClient.from(dynamo, {
    marshallOptions: { removeUndefinedValues: true },
  });
  const sqs = new SQSClient({ ...common, endpoint: config.awsEndpoints.sqs });
  const s3 = new S3Client({
    ...common,
    endpoint: config.awsEndpoints.s3,
    // An emulator answers at one address, not at a host name per bucket.
    forcePathStyle: config.awsEndpoints.s3 !== undefined,
  });
  return {
    dynamo,
    documents,
    sqs,
    s3,
    destroy() {
      documents.destroy();
      dynamo.destroy();
      sqs.destroy();
      s3.destroy();
    },
  };
}
