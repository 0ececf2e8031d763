/**
 * The AWS half of the suite runs on real emulators: DynamoDB Local (AWS's
 * own, which serialises concurrent writes to one item as DynamoDB does; Moto
 * does not) for DynamoDB, and Moto for SQS and S3. Tests share one of each
 * (see `tests/support/with_emulators.ts`), each on tables, queues and a
 * bucket of its own names; a test that changes Moto itself (its auth checks,
 * an outage) starts a Moto of its own. One test of the README's set-up runs
 * Moto for both.
 */
import { dynamoDbLocalUnavailable, sharedDynamoDbLocal } from "./dynamodb_local.ts";
import { motoUnavailable, sharedMoto, startMoto } from "./moto.ts";

/** Running emulators and the endpoint of each service. */
export interface AwsEmulators {
  readonly dynamodbUrl: string;
  readonly sqsUrl: string;
  /** S3's endpoint when it is not the SQS one (the bench's SQS stand-in serves no S3). */
  readonly s3Url?: string;
  stop(): Promise<void>;
}

/** Options for {@linkcode startAwsEmulators}. */
export interface AwsEmulatorOptions {
  /** Serve DynamoDB from Moto as well, as the README's Moto set-up does. Default false. */
  dynamodbOnMoto?: boolean;
  /**
   * A Moto of the caller's own instead of the shared one, for a test that
   * changes Moto's state beyond its own resources (e.g. resets it). Default false.
   */
  ownMoto?: boolean;
}

/**
 * The emulators for a test: the shared Moto (see {@linkcode sharedMoto}) or
 * one of its own, and the shared DynamoDB Local (see
 * {@linkcode sharedDynamoDbLocal}) unless Moto serves both. `stop` stops
 * what is the caller's own and leaves what is shared running.
 */
export async function startAwsEmulators(options: AwsEmulatorOptions = {}): Promise<AwsEmulators> {
  const [moto, dynamodb] = await Promise.allSettled([
    options.ownMoto ? startMoto() : sharedMoto(),
    options.dynamodbOnMoto ? Promise.resolve(undefined) : sharedDynamoDbLocal(),
  ]);
  if (moto.status === "rejected" || dynamodb.status === "rejected") {
    if (moto.status === "fulfilled") await moto.value.stop();
    throw moto.status === "rejected" ? moto.reason : (dynamodb as PromiseRejectedResult).reason;
  }
  return {
    sqsUrl: moto.value.url,
    dynamodbUrl: dynamodb.value?.url ?? moto.value.url,
    stop: () => moto.value.stop(),
  };
}

/**
 * Whether tests that need the emulators should be ignored: only when one is
 * missing and we are not in CI, where a missing emulator is a failure, loudly.
 */
export function skipWithoutAwsEmulators(): boolean {
  skip ??= decideSkip();
  return skip;
}

let skip: boolean | undefined;

function decideSkip(): boolean {
  const reasons = [motoUnavailable(), dynamoDbLocalUnavailable()].filter((r) => r !== undefined);
  if (reasons.length === 0) return false;
  const reason = reasons.join("; ");
  if (Deno.env.get("CI")) {
    throw new Error(`Cannot run the AWS tests in CI: ${reason}`);
  }
  console.warn(
    `\n!!! SKIPPING every [aws] test: ${reason}.\n` +
      `!!! Install Moto (\`pip install "moto[server]"\`) and a JDK (\`apt-get install default-jdk-headless\`) to run them.\n`,
  );
  return true;
}

/** AWS settings for fresh, uniquely named tables and queues on the given emulators. */
export function uniqueAwsEnv(emulators: AwsEmulators, prefix = ""): Record<string, string> {
  const suffix = crypto.randomUUID().slice(0, 8);
  return {
    BACKEND: "aws",
    AWS_ENDPOINT_URL_DYNAMODB: emulators.dynamodbUrl,
    AWS_ENDPOINT_URL_SQS: emulators.sqsUrl,
    // Moto serves S3 too: the blobs of base64 images and long chats.
    AWS_ENDPOINT_URL_S3: emulators.s3Url ?? emulators.sqsUrl,
    AWS_REGION: "us-east-1",
    AWS_ACCESS_KEY_ID: "test",
    AWS_SECRET_ACCESS_KEY: "test",
    CONVERSATIONS_TABLE: `${prefix}Conversations-${suffix}`,
    JOBS_TABLE: `${prefix}GatewayJobs-${suffix}`,
    JOBS_QUEUE: `${prefix.toLowerCase()}llm-jobs-${suffix}`,
    PRIORITY_QUEUE: `${prefix.toLowerCase()}llm-jobs-priority-${suffix}`,
    BLOB_BUCKET: `${prefix.toLowerCase()}blobs-${suffix}`,
  };
}
