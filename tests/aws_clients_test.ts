/**
 * The gateway's AWS SDK clients (lib/storage/aws/clients.ts) as the store and
 * the queue use them: on Moto with its signature checks on, on DynamoDB Local
 * behind a proxy that loses an answer, and against loopback servers that
 * answer with AWS's errors, throttles, dropped connections and a clock an
 * hour off.
 */
import assert from "node:assert/strict";
import { holdProcessEnv } from "./support/process_env.ts";
import { CreateTableCommand } from "@aws-sdk/client-dynamodb";
import { GetCommand, PutCommand, TransactWriteCommand } from "@aws-sdk/lib-dynamodb";
import {
  DeleteMessageCommand,
  GetQueueUrlCommand,
  QueueDoesNotExist,
  ReceiveMessageCommand,
  SendMessageCommand,
  StartMessageMoveTaskCommand,
} from "@aws-sdk/client-sqs";
import { loadConfig } from "../lib/core/config.ts";
import { isLastingError } from "../lib/worker/outage.ts";
import { createAwsClients } from "../lib/storage/aws/clients.ts";
import { clientsAt, TEST_KEYS } from "./support/aws_clients.ts";
import { lacksMoveTasks } from "../lib/storage/aws/sqs_queue.ts";
import { motoUserWithChecks, routedTo, skipWithoutMoto, startMoto } from "./support/moto.ts";
import { sharedDynamoDbLocal } from "./support/dynamodb_local.ts";
import { skipWithoutAwsEmulators } from "./support/aws_emulators.ts";

/** A JSON call to Moto, routed to `service` by a fake signature (before its checks are on). */
async function setupCall(
  url: string,
  service: "sqs" | "dynamodb",
  operation: string,
  input: object,
): Promise<Record<string, unknown>> {
  const res = await fetch(url, {
    method: "POST",
    headers: {
      ...routedTo(service),
      "content-type": "application/x-amz-json-1.0",
      "x-amz-target": `${service === "sqs" ? "AmazonSQS" : "DynamoDB_20120810"}.${operation}`,
    },
    body: JSON.stringify(input),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return JSON.parse(text);
}

/** What a promise rejected with; fails when it resolved. */
async function rejection(promise: Promise<unknown>): Promise<Error> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof Error, `expected a failure, got ${err}`);
  return err;
}

/** The HTTP status the SDK read from an error's answer. */
function httpStatus(err: Error): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
}

Deno.test({
  name: "on Moto with authentication on, botocore accepts the clients' signatures",
  ignore: skipWithoutMoto("the DynamoDB and SQS signing test"),
  async fn(t) {
    const moto = await startMoto();
    try {
      // The queue and the table are made before Moto's checks start; every call after is checked.
      const credentials = await motoUserWithChecks(moto, ["sqs:*", "dynamodb:*"], 2);
      const { QueueUrl } = await setupCall(moto.url, "sqs", "CreateQueue", { QueueName: "jobs" });
      await setupCall(moto.url, "dynamodb", "CreateTable", {
        TableName: "Jobs",
        AttributeDefinitions: [{ AttributeName: "job_id", AttributeType: "S" }],
        KeySchema: [{ AttributeName: "job_id", KeyType: "HASH" }],
        BillingMode: "PAY_PER_REQUEST",
      });

      await t.step(
        "first, a wrong secret is refused (so the checks are on), as an error waiting will not heal, without the secret",
        async () => {
          const wrong = clientsAt(moto.url, {
            keys: { ...credentials, secretAccessKey: "not-the-secret" },
          });
          try {
            for (
              const call of [
                () => wrong.sqs.send(new GetQueueUrlCommand({ QueueName: "jobs" })),
                () =>
                  wrong.documents.send(new GetCommand({ TableName: "Jobs", Key: { job_id: "a" } })),
              ]
            ) {
              const err = await rejection(call());
              assert.equal(isLastingError(err), true, `${err.name}: ${err.message}`);
              assert.doesNotMatch(err.message, /not-the-secret/);
            }
          } finally {
            wrong.destroy();
          }
        },
      );

      const right = clientsAt(moto.url, { keys: credentials });
      try {
        await t.step("a message sent is received, each call signed", async () => {
          const url = String(QueueUrl);
          await right.sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: "hello" }));
          const out = await right.sqs.send(
            new ReceiveMessageCommand({
              QueueUrl: url,
              WaitTimeSeconds: 1,
              MessageSystemAttributeNames: ["ApproximateReceiveCount"],
            }),
          );
          assert.equal(out.Messages?.[0]?.Body, "hello");
          assert.equal(out.Messages?.[0]?.Attributes?.ApproximateReceiveCount, "1");
        });

        await t.step("an item put is read back, each call signed", async () => {
          const item = { job_id: "j1", status: "queued", attempts: 0, context: [{ role: "user" }] };
          await right.documents.send(new PutCommand({ TableName: "Jobs", Item: item }));
          const out = await right.documents.send(
            new GetCommand({ TableName: "Jobs", Key: { job_id: "j1" } }),
          );
          assert.deepEqual(out.Item, item);
        });
      } finally {
        right.destroy();
      }
    } finally {
      await moto.stop();
    }
  },
});

/** A loopback server that answers each call with the next of `answers`, and records the calls. */
function answering(answers: (() => Response)[]) {
  const seen: { headers: Headers; body: string }[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    seen.push({ headers: req.headers, body: await req.text() });
    return (answers.shift() ?? (() => json(200, {})()))();
  });
  return { seen, url: `http://127.0.0.1:${server.addr.port}`, stop: () => server.shutdown() };
}

function json(status: number, body: object, headers: Record<string, string> = {}): () => Response {
  return () =>
    new Response(JSON.stringify(body), {
      status,
      headers: { "content-type": "application/x-amz-json-1.0", ...headers },
    });
}

Deno.test("a 5xx or a throttle is tried again, up to three attempts, each signed for its service and region, without the secret", async () => {
  const server = answering([
    json(500, { __type: "InternalFailure" }),
    json(400, {
      __type: "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
    }),
    json(200, { QueueUrl: "http://q" }),
    json(503, {}),
    json(503, {}),
    json(503, {}),
  ]);
  const calls: string[] = [];
  const { sqs, destroy } = clientsAt(server.url, {
    keys: { ...TEST_KEYS, sessionToken: "a-session-token" },
    region: "eu-west-1",
    onCall: (operation) => calls.push(operation),
  });
  try {
    const out = await sqs.send(new GetQueueUrlCommand({ QueueName: "jobs" }));
    assert.equal(out.QueueUrl, "http://q");
    assert.equal(server.seen.length, 3, "three attempts");
    for (const { headers, body } of server.seen) {
      assert.equal(headers.get("x-amz-target"), "AmazonSQS.GetQueueUrl");
      assert.match(
        headers.get("authorization") ?? "",
        /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/eu-west-1\/sqs\/aws4_request, /,
      );
      assert.equal(headers.get("x-amz-security-token"), "a-session-token");
      assert.doesNotMatch([...headers.entries()].flat().join("\n") + body, /a-secret-never-shown/);
    }
    const err = await rejection(sqs.send(new GetQueueUrlCommand({ QueueName: "jobs" })));
    assert.equal(httpStatus(err), 503, `${err.name}: ${err.message}`);
    assert.equal(server.seen.length, 6, "three more attempts, then the error");
    assert.deepEqual(calls, ["GetQueueUrl", "GetQueueUrl"], "each call counted once");
  } finally {
    destroy();
    await server.stop();
  }
});

Deno.test("a connection dropped without an answer is tried again, and the third attempt's answer is the call's", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let accepted = 0;
  const serving = (async () => {
    for await (const conn of listener) {
      accepted++;
      if (accepted < 3) {
        conn.close(); // no answer at all
        continue;
      }
      // Read the request, then answer it.
      const buffer = new Uint8Array(64 * 1024);
      let request = "";
      while (!request.includes("\r\n\r\n")) {
        const n = await conn.read(buffer);
        if (n === null) break;
        request += new TextDecoder().decode(buffer.subarray(0, n));
      }
      const body = '{"QueueUrl":"http://q"}';
      await conn.write(new TextEncoder().encode(
        "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\n" +
          `content-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
      ));
      conn.close();
    }
  })();
  const { sqs, destroy } = clientsAt(`http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`);
  try {
    const out = await sqs.send(new GetQueueUrlCommand({ QueueName: "jobs" }));
    assert.equal(out.QueueUrl, "http://q");
    assert.equal(accepted, 3, "two dropped connections, then an answer");
  } finally {
    destroy();
    listener.close();
    await serving.catch(() => {});
  }
});

Deno.test("a refusal is not tried again, and keeps its name, status and SQS's older code", async () => {
  const server = answering([
    json(400, {
      __type: "com.amazonaws.sqs#QueueDoesNotExist",
      message: "The specified queue does not exist.",
    }, { "x-amzn-query-error": "AWS.SimpleQueueService.NonExistentQueue;Sender" }),
  ]);
  const { sqs, destroy } = clientsAt(server.url);
  try {
    const err = await rejection(sqs.send(new GetQueueUrlCommand({ QueueName: "gone" })));
    assert.ok(err instanceof QueueDoesNotExist, `${err.name}: ${err.message}`);
    assert.equal(err.$metadata.httpStatusCode, 400);
    assert.equal(
      (err as unknown as { Code: string }).Code,
      "AWS.SimpleQueueService.NonExistentQueue",
    );
    assert.equal(err.message, "The specified queue does not exist.");
    assert.equal(server.seen.length, 1, "not tried again");
    assert.equal(isLastingError(err), true);
  } finally {
    destroy();
    await server.stop();
  }
});

Deno.test("only an SQS 5xx that is no JSON (Moto's page) means an SQS without move tasks", async () => {
  const page = (status: number) => () => new Response("<html>Not here</html>", { status });
  const server = answering([
    page(404),
    page(500),
    page(500),
    page(500),
    json(500, { __type: "InternalFailure" }),
    json(500, { __type: "InternalFailure" }),
    json(500, { __type: "InternalFailure" }),
  ]);
  const { sqs, destroy } = clientsAt(server.url);
  try {
    const move = () => sqs.send(new StartMessageMoveTaskCommand({ SourceArn: "arn:dlq" }));
    const missing = await rejection(move());
    assert.equal(lacksMoveTasks(missing), false, `a 404: ${missing.name}`);
    const motoPage = await rejection(move());
    assert.equal(lacksMoveTasks(motoPage), true, `Moto's page: ${motoPage.name}`);
    const awsOwn = await rejection(move());
    assert.equal(lacksMoveTasks(awsOwn), false, `AWS's own 500: ${awsOwn.name}`);
    assert.equal(server.seen.length, 7, "each 5xx tried three times");
  } finally {
    destroy();
    await server.stop();
  }
});

Deno.test("a refused signature's message stops before the canonical request AWS expected, which holds the token", async () => {
  const server = answering([
    json(400, {
      __type: "com.amazon.coral.service#InvalidSignatureException",
      message:
        "The request signature we calculated does not match the signature you provided.\n\n" +
        "The Canonical String for this request should have been\n'POST\n/\n\nx-amz-security-token:a-session-token\n'",
    }),
  ]);
  const { sqs, destroy } = clientsAt(server.url);
  try {
    const err = await rejection(
      sqs.send(new DeleteMessageCommand({ QueueUrl: `${server.url}/q`, ReceiptHandle: "r" })),
    );
    assert.equal(err.name, "InvalidSignatureException");
    assert.equal(
      err.message,
      "The request signature we calculated does not match the signature you provided.",
    );
  } finally {
    destroy();
    await server.stop();
  }
});

Deno.test("a call signed on a clock an hour off AWS's is refused once, then signed on AWS's time", async () => {
  const serverAhead = 60 * 60_000;
  const signedAt: number[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    await req.text();
    const stamp = req.headers.get("x-amz-date") ?? "";
    const signed = Date.parse(
      stamp.replace(/^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/, "$1-$2-$3T$4:$5:$6Z"),
    );
    signedAt.push(signed);
    const serverNow = Date.now() + serverAhead;
    const headers = {
      date: new Date(serverNow).toUTCString(),
      "content-type": "application/x-amz-json-1.0",
    };
    // AWS refuses a signature more than 5 minutes off its own clock.
    return Math.abs(serverNow - signed) > 5 * 60_000
      ? Response.json({ __type: "InvalidSignatureException", message: "Signature expired" }, {
        status: 400,
        headers,
      })
      : Response.json({ QueueUrl: "http://q" }, { headers });
  });
  const { sqs, destroy } = clientsAt(`http://127.0.0.1:${server.addr.port}`);
  try {
    await sqs.send(new GetQueueUrlCommand({ QueueName: "jobs" }));
    assert.equal(signedAt.length, 2, "refused once, then accepted");
    assert.ok(
      Math.abs(signedAt[1] - (Date.now() + serverAhead)) < 60_000,
      "signed on the server's time",
    );
    await sqs.send(new GetQueueUrlCommand({ QueueName: "jobs" }));
    assert.equal(signedAt.length, 3, "the next call is signed on the server's time from the start");
  } finally {
    destroy();
    await server.shutdown();
  }
});

Deno.test({
  name:
    "on DynamoDB Local, a transaction applied but whose answer was lost is tried again with its token, and applied once",
  ignore: skipWithoutAwsEmulators(),
  async fn() {
    const dynamodb = await sharedDynamoDbLocal();
    const table = `Tokens-${crypto.randomUUID().slice(0, 8)}`;
    // Between the clients and DynamoDB Local: the first transaction reaches it, its answer does not.
    const tokens: string[] = [];
    const proxy = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
      const body = await req.arrayBuffer();
      const forwarded = await fetch(new URL(new URL(req.url).pathname, dynamodb.url), {
        method: req.method,
        headers: req.headers,
        body,
      });
      const answer = await forwarded.arrayBuffer();
      if ((req.headers.get("x-amz-target") ?? "").endsWith(".TransactWriteItems")) {
        tokens.push(JSON.parse(new TextDecoder().decode(body)).ClientRequestToken);
        if (tokens.length === 1) {
          return new Response("connection reset by a proxy", { status: 502 });
        }
      }
      return new Response(answer, { status: forwarded.status, headers: forwarded.headers });
    });
    const clients = clientsAt(`http://127.0.0.1:${proxy.addr.port}`, {
      keys: { accessKeyId: "test", secretAccessKey: "test" },
    });
    try {
      await clients.dynamo.send(
        new CreateTableCommand({
          TableName: table,
          AttributeDefinitions: [{ AttributeName: "job_id", AttributeType: "S" }],
          KeySchema: [{ AttributeName: "job_id", KeyType: "HASH" }],
          BillingMode: "PAY_PER_REQUEST",
        }),
      );
      // Without the same token on the retry, its condition would fail: the job already exists.
      await clients.documents.send(
        new TransactWriteCommand({
          TransactItems: [
            {
              Put: {
                TableName: table,
                Item: { job_id: "once", status: "succeeded" },
                ConditionExpression: "attribute_not_exists(job_id)",
              },
            },
            {
              Update: {
                TableName: table,
                Key: { job_id: "count" },
                UpdateExpression: "ADD applied :one",
                ExpressionAttributeValues: { ":one": 1 },
              },
            },
          ],
        }),
      );
      assert.equal(tokens.length, 2, "the first answer was lost, and the call tried again");
      assert.match(tokens[0], /^[0-9a-f-]{36}$/);
      assert.equal(tokens[1], tokens[0], "both attempts carried one token");
      const count = await clients.documents.send(
        new GetCommand({ TableName: table, Key: { job_id: "count" }, ConsistentRead: true }),
      );
      assert.equal(count.Item?.applied, 1, "applied once");
    } finally {
      clients.destroy();
      await proxy.shutdown();
    }
  },
});

Deno.test({
  name:
    "without keys in the configuration, the credentials come from the SDK's chain (here a profile's file)",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "aws-profile-" });
    // Files run at once in one process: the environment is taken in turns.
    const processEnv = await holdProcessEnv({
      AWS_ACCESS_KEY_ID: undefined,
      AWS_SECRET_ACCESS_KEY: undefined,
      AWS_SESSION_TOKEN: undefined,
      AWS_PROFILE: "gateway-test",
      AWS_SHARED_CREDENTIALS_FILE: `${dir}/credentials`,
      AWS_CONFIG_FILE: `${dir}/config`,
    });
    const server = answering([json(200, { QueueUrl: "http://q" })]);
    try {
      await Deno.writeTextFile(
        `${dir}/credentials`,
        "[gateway-test]\naws_access_key_id = AKIDFROMFILE\naws_secret_access_key = file-secret\n",
      );
      await Deno.writeTextFile(`${dir}/config`, "");

      const config = loadConfig({
        BACKEND: "aws",
        AWS_REGION: "us-east-1",
        AWS_ENDPOINT_URL_SQS: server.url,
      });
      assert.equal(config.awsCredentials, undefined, "no keys configured");
      const { sqs, destroy } = createAwsClients(config);
      try {
        await sqs.send(new GetQueueUrlCommand({ QueueName: "jobs" }));
      } finally {
        destroy();
      }
      assert.match(server.seen[0].headers.get("authorization") ?? "", /Credential=AKIDFROMFILE\//);
    } finally {
      await processEnv.release();
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
