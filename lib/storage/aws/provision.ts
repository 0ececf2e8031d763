/** Creates the tables and queues the gateway needs; safe to run again. */
import {
  type AttributeDefinition,
  CreateTableCommand,
  DescribeTableCommand,
  type GlobalSecondaryIndex,
  ResourceInUseException,
  UpdateTableCommand,
  UpdateTimeToLiveCommand,
  waitUntilTableExists,
} from "@aws-sdk/client-dynamodb";
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  QueueDoesNotExist,
} from "@aws-sdk/client-sqs";
import {
  BucketAlreadyOwnedByYou,
  CreateBucketCommand,
  PutBucketLifecycleConfigurationCommand,
  PutPublicAccessBlockCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import type { Config } from "../../core/config.ts";
import { BLOB_PREFIX, SHORT_LIVED_PREFIX } from "./s3_blobs.ts";
import { SUMMARY_FIELDS } from "../../core/job_list.ts";
import { backendQueueNames } from "../../core/queue.ts";
import type { Logger } from "../../core/log.ts";
import { sleep } from "../../core/sleep.ts";
import { type AwsClients, createAwsClients } from "./clients.ts";
import { OWNER_INDEX } from "./dynamo_items.ts";

/** Seconds a dead-letter queue keeps a message: SQS's maximum, 14 days. */
const DLQ_RETENTION_SECONDS = 1_209_600;

/**
 * Creates both tables (jobs with TTL) and each configured backend's two
 * queues, each with a dead-letter queue, on the configured endpoint; safe to
 * run again, and again after a backend is added.
 */
export async function provisionAws(config: Config, logger: Logger): Promise<void> {
  const clients = createAwsClients(config);
  try {
    await provisionWith(clients, config, logger);
  } finally {
    clients.destroy();
  }
}

async function provisionWith(clients: AwsClients, config: Config, logger: Logger): Promise<void> {
  await ensureTable(clients, config.conversationsTable, "conversation_id", logger);
  await ensureTable(clients, config.jobsTable, "job_id", logger, ownerIndex());
  await ensureIndex(clients, config.jobsTable, ownerIndex(), logger);
  await clients.dynamo.send(
    new UpdateTimeToLiveCommand({
      TableName: config.jobsTable,
      TimeToLiveSpecification: { AttributeName: "expires_at", Enabled: true },
    }),
  ).catch((err: Error) => {
    // AWS refuses to enable TTL twice; that is the state we want anyway.
    if (!/already enabled/i.test(err.message)) throw err;
  });
  for (const name of backendQueueNames(config)) {
    await ensureQueueWithDlq(clients, name, config.maxAttempts, logger);
  }
  await configureBlobBucket(await clients.s3(), config, logger);
}

/**
 * The blob bucket: private, and its blobs expire after `BLOB_TTL_DAYS` (a
 * stored conversation then shows a note where an expired image was).
 */
async function configureBlobBucket(s3: S3Client, config: Config, logger: Logger) {
  const Bucket = config.blobBucket;
  try {
    await s3.send(
      new CreateBucketCommand({
        Bucket,
        ...(config.awsRegion === "us-east-1"
          ? {}
          : { CreateBucketConfiguration: { LocationConstraint: config.awsRegion as never } }),
      }),
    );
    logger.info("Created bucket", { bucket: Bucket });
  } catch (err) {
    if (!(err instanceof BucketAlreadyOwnedByYou)) throw err;
    logger.info("Bucket already exists", { bucket: Bucket });
  }
  await s3.send(
    new PutPublicAccessBlockCommand({
      Bucket,
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        IgnorePublicAcls: true,
        BlockPublicPolicy: true,
        RestrictPublicBuckets: true,
      },
    }),
  );
  await s3.send(
    new PutBucketLifecycleConfigurationCommand({
      Bucket,
      LifecycleConfiguration: {
        Rules: [{
          ID: "expire-blobs",
          Status: "Enabled",
          Filter: { Prefix: BLOB_PREFIX },
          Expiration: { Days: config.blobTtlDays },
        }, {
          // A stateless request's blobs; where the two rules meet, S3 keeps to the shorter.
          ID: "expire-short-lived-blobs",
          Status: "Enabled",
          Filter: { Prefix: SHORT_LIVED_PREFIX },
          Expiration: { Days: 1 },
        }],
      },
    }),
  );
}

/** The jobs table's index by owner and creation time (see `OWNER_INDEX`), with its attributes. */
function ownerIndex(): { index: GlobalSecondaryIndex; attributes: AttributeDefinition[] } {
  const keys: string[] = [OWNER_INDEX.partitionKey, OWNER_INDEX.sortKey, "job_id"];
  return {
    index: {
      IndexName: OWNER_INDEX.name,
      KeySchema: [
        { AttributeName: OWNER_INDEX.partitionKey, KeyType: "HASH" },
        { AttributeName: OWNER_INDEX.sortKey, KeyType: "RANGE" },
      ],
      Projection: {
        ProjectionType: "INCLUDE",
        NonKeyAttributes: SUMMARY_FIELDS.filter((field) => !keys.includes(field)),
      },
    },
    attributes: [
      { AttributeName: OWNER_INDEX.partitionKey, AttributeType: "S" },
      { AttributeName: OWNER_INDEX.sortKey, AttributeType: "S" },
    ],
  };
}

async function ensureTable(
  clients: AwsClients,
  name: string,
  key: string,
  logger: Logger,
  index?: { index: GlobalSecondaryIndex; attributes: AttributeDefinition[] },
) {
  try {
    await clients.dynamo.send(
      new CreateTableCommand({
        TableName: name,
        BillingMode: "PAY_PER_REQUEST",
        AttributeDefinitions: [
          { AttributeName: key, AttributeType: "S" },
          ...index?.attributes ?? [],
        ],
        KeySchema: [{ AttributeName: key, KeyType: "HASH" }],
        GlobalSecondaryIndexes: index && [index.index],
      }),
    );
    logger.info("Created table", { table: name });
  } catch (err) {
    if (!(err instanceof ResourceInUseException)) throw err;
    const existing = await clients.dynamo.send(new DescribeTableCommand({ TableName: name }));
    const existingKey = existing.Table?.KeySchema?.find((k) => k.KeyType === "HASH")?.AttributeName;
    if (existingKey !== key) {
      throw new Error(
        `Cannot use table "${name}": its partition key is "${existingKey}", expected "${key}"`,
      );
    }
    logger.info("Table already exists", { table: name });
  }
  await waitUntilTableExists({ client: clients.dynamo, maxWaitTime: 120 }, { TableName: name });
}

/**
 * Adds an index to a table made before it existed, and waits until it is
 * active (DynamoDB fills it from the existing items first).
 */
async function ensureIndex(
  clients: AwsClients,
  table: string,
  { index, attributes }: { index: GlobalSecondaryIndex; attributes: AttributeDefinition[] },
  logger: Logger,
) {
  const status = async () =>
    (await clients.dynamo.send(new DescribeTableCommand({ TableName: table }))).Table
      ?.GlobalSecondaryIndexes?.find((i) => i.IndexName === index.IndexName)?.IndexStatus;
  if (!(await status())) {
    await clients.dynamo.send(
      new UpdateTableCommand({
        TableName: table,
        AttributeDefinitions: attributes,
        GlobalSecondaryIndexUpdates: [{ Create: index }],
      }),
    );
    logger.info("Adding index to table; waiting until it is active", {
      table,
      index: index.IndexName,
    });
  }
  const deadline = Date.now() + 600_000;
  for (let state = await status(); state !== "ACTIVE"; state = await status()) {
    if (Date.now() > deadline) {
      throw new Error(
        `Cannot use table "${table}": index "${index.IndexName}" is still ${state} after 10 minutes; run setup again later`,
      );
    }
    await sleep(2000);
  }
}

async function ensureQueueWithDlq(
  clients: AwsClients,
  name: string,
  maxAttempts: number,
  logger: Logger,
) {
  const existing = await findQueueUrl(clients, name);
  if (existing) {
    const attrs = await clients.sqs.send(
      new GetQueueAttributesCommand({ QueueUrl: existing, AttributeNames: ["RedrivePolicy"] }),
    );
    const level = attrs.Attributes?.RedrivePolicy ? "info" : "warn";
    logger[level]("Queue already exists; left as it is", {
      queue: name,
      redrive_policy: attrs.Attributes?.RedrivePolicy ??
        "none: failed jobs will not reach a dead-letter queue",
    });
    return;
  }
  const fifo = name.endsWith(".fifo");
  const dlqName = fifo ? `${name.slice(0, -5)}-dlq.fifo` : `${name}-dlq`;
  const dlqUrl = (await findQueueUrl(clients, dlqName)) ??
    (await clients.sqs.send(
      new CreateQueueCommand({
        QueueName: dlqName,
        Attributes: {
          MessageRetentionPeriod: String(DLQ_RETENTION_SECONDS),
          ...(fifo ? { FifoQueue: "true" } : {}),
        },
      }),
    )).QueueUrl!;
  const dlqArn = (await clients.sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: dlqUrl, AttributeNames: ["QueueArn"] }),
  )).Attributes?.QueueArn;
  await clients.sqs.send(
    new CreateQueueCommand({
      QueueName: name,
      Attributes: {
        RedrivePolicy: JSON.stringify({
          deadLetterTargetArn: dlqArn,
          maxReceiveCount: maxAttempts,
        }),
        ...(fifo ? { FifoQueue: "true" } : {}),
      },
    }),
  );
  logger.info("Created queue with dead-letter queue", {
    queue: name,
    dlq: dlqName,
    max_receive_count: maxAttempts,
  });
}

async function findQueueUrl(clients: AwsClients, name: string): Promise<string | undefined> {
  try {
    return (await clients.sqs.send(new GetQueueUrlCommand({ QueueName: name }))).QueueUrl;
  } catch (err) {
    if (err instanceof QueueDoesNotExist) return undefined;
    throw err;
  }
}
