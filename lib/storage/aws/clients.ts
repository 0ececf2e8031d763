/** AWS SDK clients built from the configuration; creating them does no I/O. */
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { SQSClient } from "@aws-sdk/client-sqs";
import type { Config } from "../../core/config.ts";
import { S3Objects, type S3ObjectsOptions } from "./s3_objects.ts";

/** The clients the AWS store and queue use. */
export interface AwsClients {
  dynamo: DynamoDBClient;
  documents: DynamoDBDocumentClient;
  sqs: SQSClient;
  /** The blob bucket's objects, signed with the SQS client's region and credentials. */
  blobObjects(options?: Pick<S3ObjectsOptions, "expectedBucketOwner">): S3Objects;
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

/** Creates DynamoDB and SQS clients and S3 object access for the configured region and endpoints. */
export function createAwsClients(config: Config): AwsClients {
  const common = sdkClientSettings(config);
  const dynamo = new DynamoDBClient({ ...common, endpoint: config.awsEndpoints.dynamodb });
  const documents = DynamoDBDocumentClient.from(dynamo, {
    marshallOptions: { removeUndefinedValues: true },
  });
  const sqs = new SQSClient({ ...common, endpoint: config.awsEndpoints.sqs });
  const blobObjects = (options: Pick<S3ObjectsOptions, "expectedBucketOwner"> = {}) =>
    new S3Objects({
      bucket: config.blobBucket,
      region: sqs.config.region,
      // The default provider chain as SQS resolved it (Lambda's role, the Mac's profile), refreshed as it is.
      credentials: sqs.config.credentials,
      endpoint: config.awsEndpoints.s3,
      timeoutMs: common.requestHandler.requestTimeout,
      maxAttempts: common.maxAttempts,
      ...options,
    });
  return {
    dynamo,
    documents,
    sqs,
    blobObjects,
    destroy() {
      documents.destroy();
      dynamo.destroy();
      sqs.destroy();
    },
  };
}
