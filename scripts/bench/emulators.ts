/**
 * The AWS emulators the bench runs on: DynamoDB Local (AWS's own) for
 * DynamoDB and, for SQS, the fast stand-in (scripts/bench/fast_sqs.ts) or Moto.
 * Moto answers about 300 requests a second, so with Moto the bench's AWS
 * figures measure Moto rather than the gateway.
 */
import type { AwsEmulators } from "../../tests/support/aws_emulators.ts";
import { sharedDynamoDbLocal } from "../../tests/support/dynamodb_local.ts";
import { startMoto } from "../../tests/support/moto.ts";
import { startFastSqs } from "./fast_sqs.ts";

/** Which SQS the bench runs on. */
export type BenchSqs = "fast" | "moto";

/** The emulators, with the ids of the processes whose CPU time the bench reports. */
export interface BenchEmulators extends AwsEmulators {
  readonly processes: Readonly<Record<string, number>>;
}

/**
 * Starts DynamoDB Local (one per process) and an SQS of the chosen kind, and
 * Moto for S3 (the blob bucket, which `provisionAws` makes); `stop` stops
 * what it started but DynamoDB Local.
 */
export async function startBenchEmulators(sqs: BenchSqs): Promise<BenchEmulators> {
  const [dynamodb, moto, fast] = await Promise.all([
    sharedDynamoDbLocal(),
    startMoto(),
    sqs === "fast" ? startFastSqs() : undefined,
  ]);
  return {
    dynamodbUrl: dynamodb.url,
    sqsUrl: fast?.url ?? moto.url,
    s3Url: moto.url,
    processes: {
      "DynamoDB Local": dynamodb.pid,
      ...(fast ? { "SQS stand-in": fast.pid } : {}),
    },
    stop: async () => {
      await fast?.stop();
      await moto.stop();
    },
  };
}
