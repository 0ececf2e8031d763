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

/** Starts DynamoDB Local (one per process) and an SQS of the chosen kind; `stop` stops the SQS. */
export async function startBenchEmulators(sqs: BenchSqs): Promise<BenchEmulators> {
  const [dynamodb, queue] = await Promise.all([
    sharedDynamoDbLocal(),
    sqs === "fast" ? startFastSqs() : startMoto(),
  ]);
  return {
    dynamodbUrl: dynamodb.url,
    sqsUrl: queue.url,
    processes: {
      "DynamoDB Local": dynamodb.pid,
      ...("pid" in queue ? { "SQS stand-in": queue.pid as number } : {}),
    },
    stop: () => queue.stop(),
  };
}
