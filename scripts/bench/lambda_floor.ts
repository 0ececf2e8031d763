/**
 * The floor the Lambda bundle is held to: Hono with its Lambda adapter and the
 * AWS SDK clients the front door uses (the DynamoDB document client, SQS and
 * S3), each really called, and nothing else. `POST /chat` makes five calls,
 * as the gateway's first one does: it reads the conversation, writes the job,
 * joins its line, sends it to the queue, and keeps the request's body in the
 * blob bucket (where the gateway reads the workers' records instead), without
 * the gateway's checks. The bench bundles it as `deno task build` bundles
 * lib/http/lambda.ts and times both side by side.
 */
import process from "node:process";
import { Hono } from "hono";
import { handle } from "hono/aws-lambda";
import { SendMessageCommand, SQSClient } from "@aws-sdk/client-sqs";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import {
  DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  UpdateCommand,
} from "@aws-sdk/lib-dynamodb";
import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3";

const env = process.env;
// The same client settings as the gateway's (lib/storage/aws/clients.ts), credentials included.
const common = {
  region: env.AWS_REGION,
  credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID!, secretAccessKey: env.AWS_SECRET_ACCESS_KEY! },
  retryMode: "standard",
  maxAttempts: 3,
};
const timeouts = (requestTimeout: number) => ({
  requestHandler: { connectionTimeout: 5_000, requestTimeout, throwOnRequestTimeout: true },
});
const sqs = new SQSClient({
  ...common,
  ...timeouts(35_000),
  endpoint: env.AWS_ENDPOINT_URL_SQS,
});
const db = DynamoDBDocumentClient.from(
  new DynamoDBClient({ ...common, ...timeouts(15_000), endpoint: env.AWS_ENDPOINT_URL_DYNAMODB }),
  { marshallOptions: { removeUndefinedValues: true } },
);
const s3 = new S3Client({
  ...common,
  ...timeouts(35_000),
  endpoint: env.AWS_ENDPOINT_URL_S3,
  forcePathStyle: env.AWS_ENDPOINT_URL_S3 !== undefined,
});

const app = new Hono();
app.post("/chat", async (c) => {
  const text = await c.req.text();
  const body = JSON.parse(text);
  const conversation = await db.send(
    new GetCommand({
      TableName: env.CONVERSATIONS_TABLE,
      Key: { conversation_id: body.conversation_id },
      ConsistentRead: true,
    }),
  );
  const jobId = crypto.randomUUID();
  await db.send(
    new PutCommand({
      TableName: env.JOBS_TABLE,
      Item: { job_id: jobId, history: conversation.Item?.messages?.length ?? 0 },
    }),
  );
  await db.send(
    new UpdateCommand({
      TableName: env.JOBS_TABLE,
      Key: { job_id: `line#${body.conversation_id}` },
      UpdateExpression: "SET pending = list_append(if_not_exists(pending, :empty), :job)",
      ExpressionAttributeValues: { ":empty": [], ":job": [jobId] },
    }),
  );
  await s3.send(
    new PutObjectCommand({
      Bucket: env.BLOB_BUCKET,
      Key: `blobs/floor/${jobId}.json`,
      Body: new TextEncoder().encode(text),
      ContentType: "application/json",
    }),
  );
  await sqs.send(
    new SendMessageCommand({
      QueueUrl: env.FLOOR_QUEUE_URL,
      MessageBody: JSON.stringify({ jobId }),
    }),
  );
  return c.json({ job_id: jobId }, 202);
});

/** The floor's Lambda handler. */
export const handler = handle(app);
