/**
 * The floor the Lambda bundle is held to: Hono with its Lambda adapter, the
 * SQS client and the DynamoDB document client, each really used, and nothing
 * else. `POST /chat` makes the calls the gateway's makes (read the
 * conversation, write the job, join its line, send it to the queue) without
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

const env = process.env;
// The same client settings as the gateway's (lib/storage/aws/clients.ts), credentials included.
const common = {
  region: env.AWS_REGION,
  credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID!, secretAccessKey: env.AWS_SECRET_ACCESS_KEY! },
  maxAttempts: 3,
};
const sqs = new SQSClient({ ...common, endpoint: env.AWS_ENDPOINT_URL_SQS });
const db = DynamoDBDocumentClient.from(
  new DynamoDBClient({ ...common, endpoint: env.AWS_ENDPOINT_URL_DYNAMODB }),
  { marshallOptions: { removeUndefinedValues: true } },
);

const app = new Hono();
app.post("/chat", async (c) => {
  const body = await c.req.json();
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
