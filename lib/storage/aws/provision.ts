/** Creates the tables and queues the gateway needs; safe to run again. */
import {
  CreateTableCommand,
  DescribeTableCommand,
  ResourceInUseException,
  UpdateTimeToLiveCommand,
  waitUntilTableExists,
} from "@aws-sdk/client-dynamodb";
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  QueueDoesNotExist,
} from "@aws-sdk/client-sqs";
import type { Config } from "../../core/config.ts";
import { queueNameFor } from "../../core/queue.ts";
import type { Logger } from "../../core/log.ts";
import { type AwsClients, createAwsClients } from "./clients.ts";

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
  await ensureTable(clients, config.jobsTable, "job_id", logger);
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
}

/** The names of every configured backend's queues (without their dead-letter queues), priority first. */
export function backendQueueNames(config: Config): string[] {
  return [config.priorityQueue, config.jobsQueue].flatMap((base) =>
    config.llmBackends.map((b) => queueName(queueNameFor(base, b.name)))
  );
}

/** The queue name in a queue name or URL. */
export function queueName(nameOrUrl: string): string {
  return nameOrUrl.replace(/\/+$/, "").split("/").pop() ?? nameOrUrl;
}

async function ensureTable(clients: AwsClients, name: string, key: string, logger: Logger) {
  try {
    await clients.dynamo.send(
      new CreateTableCommand({
        TableName: name,
        BillingMode: "PAY_PER_REQUEST",
        AttributeDefinitions: [{ AttributeName: key, AttributeType: "S" }],
        KeySchema: [{ AttributeName: key, KeyType: "HASH" }],
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
