/**
 * How the store, the queue and the blobs reach DynamoDB, SQS and S3: signed
 * `fetch` calls (json_protocol.ts, s3_objects.ts), made from the
 * configuration without any I/O. The AWS SDK's clients are only for setting
 * up tables and queues (clients.ts, provision.ts) and for finding credentials
 * that are not configured (credential_chain.ts).
 */
import type { Config } from "../../core/config.ts";
import { DynamoDocuments } from "./documents.ts";
import { type CredentialSource, JsonService } from "./json_protocol.ts";
import { S3Objects, type S3ObjectsOptions } from "./s3_objects.ts";
import { SqsCalls } from "./sqs_calls.ts";

/** Attempts per call when AWS answers 5xx or throttles, or the network fails. */
const MAX_ATTEMPTS = 3;
/** How long one attempt of a DynamoDB or SQS call may take (a long poll: its wait and this). */
const CALL_TIMEOUT_MS = 15_000;
/** How long one attempt to put or get a blob may take. */
const BLOB_TIMEOUT_MS = 35_000;

/** What the AWS store, queue and blobs call. */
export interface AwsConnections {
  documents: DynamoDocuments;
  sqs: SqsCalls;
  /** The blob bucket's objects. */
  blobObjects(options?: Pick<S3ObjectsOptions, "expectedBucketOwner">): S3Objects;
}

/** Starts a chain of places to find credentials in, for a region. */
export type CredentialChain = (region: string) => Promise<CredentialSource>;

/** Options for {@linkcode connectAws}. */
export interface ConnectOptions {
  /** Where credentials come from when none are configured; without it they must be. */
  credentialChain?: CredentialChain;
  /** Told of every DynamoDB and SQS call by its operation's name (the bench counts them). */
  onCall?: (operation: string) => void;
}

/** The connections for the configured region, endpoints and credentials. */
export function connectAws(config: Config, options: ConnectOptions = {}): AwsConnections {
  const credentials = credentialSource(config, options.credentialChain);
  const common = {
    region: config.awsRegion,
    credentials,
    maxAttempts: MAX_ATTEMPTS,
    timeoutMs: CALL_TIMEOUT_MS,
    onCall: options.onCall,
  };
  const db = new JsonService({
    ...common,
    service: "dynamodb",
    targetPrefix: "DynamoDB_20120810",
    endpoint: config.awsEndpoints.dynamodb,
  });
  const sqs = new SqsCalls(
    new JsonService({
      ...common,
      service: "sqs",
      targetPrefix: "AmazonSQS",
      endpoint: config.awsEndpoints.sqs,
      // As the SDK asks: errors also carry SQS's older codes (`x-amzn-query-error`).
      headers: { "x-amzn-query-mode": "true" },
    }),
  );
  return {
    documents: new DynamoDocuments(db),
    sqs,
    blobObjects: (objects = {}) =>
      new S3Objects({
        bucket: config.blobBucket,
        region: config.awsRegion,
        credentials,
        endpoint: config.awsEndpoints.s3,
        timeoutMs: BLOB_TIMEOUT_MS,
        maxAttempts: MAX_ATTEMPTS,
        ...objects,
      }),
  };
}

/**
 * The configured keys (`AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, as
 * Lambda sets them for its role), or else `chain` (a profile, SSO, the
 * instance's role: credential_chain.ts), started on the first call. Without
 * either, every call fails saying what to set.
 */
export function credentialSource(config: Config, chain?: CredentialChain): CredentialSource {
  const keys = config.awsCredentials;
  if (keys) {
    const fixed = Promise.resolve({ ...keys });
    return () => fixed;
  }
  if (!chain) {
    return () =>
      Promise.reject(
        new Error(
          "No AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (Lambda sets them for its role)",
        ),
      );
  }
  let started: Promise<CredentialSource> | undefined;
  return async () => {
    started ??= chain(config.awsRegion).catch((err) => {
      started = undefined;
      throw err;
    });
    return await (await started)();
  };
}
