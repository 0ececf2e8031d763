/**
 * The start-up look at what the configuration names on AWS: both tables,
 * every backend's queues and the blob bucket. `deno task dev` and `deno task
 * worker` log what is missing with the command that makes it, so a newcomer
 * who has not run `deno task setup` (or started Moto) hears it at once rather
 * than from the first request. The Lambda does not look (its stack makes
 * them), and never loads this module: it would carry the S3 client's whole
 * index into the bundle.
 */
import { DescribeTableCommand } from "@aws-sdk/client-dynamodb";
import { GetQueueUrlCommand } from "@aws-sdk/client-sqs";
import type { Config } from "../../core/config.ts";
import { errorMessage } from "../../core/error_message.ts";
import { missingResource } from "../../core/missing_resource.ts";
import { type AwsClients, createAwsClients } from "./clients.ts";
import { backendQueueNames } from "../../core/queue.ts";

/** How long the look may take in all: a dead endpoint must not hold the start. */
const CHECK_TIMEOUT_MS = 10_000;
const SETUP = "run `deno task setup`";
const REFUSED =
  "The AWS endpoint refuses connections: start moto_server (or check AWS_ENDPOINT_URL), then run `deno task setup`";

/** Options for {@linkcode missingAwsResources}. */
export interface SetupCheckOptions {
  /**
   * Look at the blob bucket too. A worker leaves it out: it loads the S3
   * client only at its first blob (clients.ts), and most never see one.
   */
  bucket?: boolean;
}

/**
 * What the configuration names that AWS lacks, each as one sentence with its
 * fix; empty when everything is there. Clients of its own, for this once, as
 * `deno task setup` has.
 */
export async function checkAwsSetup(
  config: Config,
  options: SetupCheckOptions = {},
): Promise<string[]> {
  const clients = createAwsClients(config);
  try {
    return await missingAwsResources(config, clients, options);
  } finally {
    clients.destroy();
  }
}

/** What is missing, each as one sentence with its fix; empty when everything is there. */
export async function missingAwsResources(
  config: Config,
  clients: AwsClients,
  options: SetupCheckOptions = {},
): Promise<string[]> {
  const signal = AbortSignal.timeout(CHECK_TIMEOUT_MS);
  const look = async (what: string, call: () => Promise<unknown>): Promise<string | undefined> => {
    try {
      await call();
      return undefined;
    } catch (err) {
      const missing = missingResource(err);
      // Said once for all the resources behind one dead endpoint.
      if (missing === "endpoint") return REFUSED;
      if (missing || isNotFound(err)) return `${what} does not exist: ${SETUP}`;
      return `${what} cannot be checked: ${errorMessage(err)}`;
    }
  };
  const tables = [config.conversationsTable, config.jobsTable].map((name) =>
    look(
      `DynamoDB table "${name}"`,
      () =>
        clients.dynamo.send(new DescribeTableCommand({ TableName: name }), { abortSignal: signal }),
    )
  );
  const queues = backendQueueNames(config).map((name) =>
    look(
      `SQS queue "${name}"`,
      () => clients.sqs.send(new GetQueueUrlCommand({ QueueName: name }), { abortSignal: signal }),
    )
  );
  const bucket = options.bucket === false
    ? undefined
    : look(`S3 bucket "${config.blobBucket}"`, async () => {
      const { HeadBucketCommand } = await import("@aws-sdk/client-s3");
      await (await clients.s3()).send(new HeadBucketCommand({ Bucket: config.blobBucket }), {
        abortSignal: signal,
      });
    });
  const problems = (await Promise.all([...tables, ...queues, bucket]))
    .filter((p): p is string => p !== undefined);
  return [...new Set(problems)];
}

/** S3 answers a missing bucket's HEAD with a bare 404 (`NotFound`). */
function isNotFound(err: unknown): boolean {
  const { name, $metadata } = (err ?? {}) as {
    name?: string;
    $metadata?: { httpStatusCode?: number };
  };
  return name === "NotFound" || name === "NoSuchBucket" || $metadata?.httpStatusCode === 404;
}
