/**
 * DynamoDB and SQS over signed fetch (lib/storage/aws/json_protocol.ts,
 * documents.ts): signatures Moto checks with botocore's own signer once its
 * authentication is on; items that read the same through the SDK's document
 * client and through ours, on DynamoDB Local; and errors, attempts and
 * credentials as a loopback server and the SDK's chain give them.
 */
import assert from "node:assert/strict";
import { CreateTableCommand } from "@aws-sdk/client-dynamodb";
import { GetCommand, PutCommand } from "@aws-sdk/lib-dynamodb";
import { loadConfig } from "../lib/core/config.ts";
import { isLastingError } from "../lib/worker/outage.ts";
import { createAwsClients } from "../lib/storage/aws/clients.ts";
import { connectAws, credentialSource } from "../lib/storage/aws/connections.ts";
import { sdkCredentialChain } from "../lib/storage/aws/credential_chain.ts";
import {
  AwsNetworkError,
  AwsServiceError,
  isAwsError,
  JsonService,
} from "../lib/storage/aws/json_protocol.ts";
import { toAttributeMap } from "../lib/storage/aws/attribute_values.ts";
import { lacksMoveTasks } from "../lib/storage/aws/sqs_queue.ts";
import { motoUnavailable, motoUserWithChecks, routedTo, startMoto } from "./support/moto.ts";
import { sharedDynamoDbLocal } from "./support/dynamodb_local.ts";
import { skipWithoutAwsEmulators } from "./support/aws_emulators.ts";
import { holdProcessEnv } from "./support/process_env.ts";

const KEYS = { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "a-secret-never-shown" };

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

/** The gateway's own connections to the AWS services at `url`, signed with `keys`. */
function connectTo(url: string, keys: { accessKeyId: string; secretAccessKey: string } = KEYS) {
  return connectAws(loadConfig({
    BACKEND: "aws",
    AWS_REGION: "us-east-1",
    AWS_ENDPOINT_URL: url,
    AWS_ACCESS_KEY_ID: keys.accessKeyId,
    AWS_SECRET_ACCESS_KEY: keys.secretAccessKey,
  }));
}

Deno.test({
  name:
    "DynamoDB and SQS calls on Moto with authentication on: botocore finds our signatures right",
  ignore: (() => {
    const reason = motoUnavailable();
    if (reason && Deno.env.get("CI")) throw new Error(`Cannot run this test in CI: ${reason}`);
    if (reason) console.warn(`\n!!! SKIPPING the DynamoDB and SQS signing test: ${reason}\n`);
    return reason !== undefined;
  })(),
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
          const wrong = connectTo(moto.url, { ...credentials, secretAccessKey: "not-the-secret" });
          for (
            const call of [
              () => wrong.sqs.call("GetQueueUrl", { QueueName: "jobs" }),
              () => wrong.documents.get({ TableName: "Jobs", Key: { job_id: "a" } }),
            ]
          ) {
            const err = await call().then(() => undefined, (e: unknown) => e);
            assert.ok(err instanceof AwsServiceError, String(err));
            assert.equal(err.status, 403, err.message);
            assert.equal(isLastingError(err), true, err.message);
            assert.doesNotMatch(err.message, /not-the-secret/);
          }
        },
      );

      const right = connectTo(moto.url, credentials);
      await t.step("a message sent is received, each call signed", async () => {
        await right.sqs.call("SendMessage", { QueueUrl: String(QueueUrl), MessageBody: "hello" });
        const out = await right.sqs.call("ReceiveMessage", {
          QueueUrl: String(QueueUrl),
          WaitTimeSeconds: 1,
          MessageSystemAttributeNames: ["ApproximateReceiveCount"],
        });
        assert.equal(out.Messages?.[0]?.Body, "hello");
        assert.equal(out.Messages?.[0]?.Attributes?.ApproximateReceiveCount, "1");
      });

      await t.step("an item put is read back, each call signed", async () => {
        const item = { job_id: "j1", status: "queued", attempts: 0, context: [{ role: "user" }] };
        await right.documents.put({ TableName: "Jobs", Item: item });
        const out = await right.documents.get({ TableName: "Jobs", Key: { job_id: "j1" } });
        assert.deepEqual(out.Item, item);
      });
    } finally {
      await moto.stop();
    }
  },
});

/** An item with every kind of value a job record or a conversation holds, and a few more. */
const EVERY_KIND = {
  conversation_id: "c-ünïcode ✓",
  text: "",
  count: 42,
  negative: -7,
  fraction: 0.125,
  big: 2 ** 52,
  yes: true,
  no: false,
  nothing: null,
  list: ["a", 1, null, { nested: [true, { deep: "x" }] }, []],
  map: { empty: {}, inner: { a: "b" } },
  bytes: new Uint8Array([0, 1, 2, 250, 255]),
  names: new Set(["x", "y"]),
  numbers: new Set([1, 2.5]),
};

Deno.test({
  name:
    "on DynamoDB Local, an item written through the SDK's document client reads back the same through ours, and the reverse",
  ignore: skipWithoutAwsEmulators(),
  async fn() {
    const dynamodb = await sharedDynamoDbLocal();
    const config = loadConfig({
      BACKEND: "aws",
      AWS_ENDPOINT_URL: dynamodb.url,
      AWS_ACCESS_KEY_ID: "test",
      AWS_SECRET_ACCESS_KEY: "test",
      CONVERSATIONS_TABLE: `Kinds-${crypto.randomUUID().slice(0, 8)}`,
    });
    const sdk = createAwsClients(config);
    try {
      await sdk.dynamo.send(
        new CreateTableCommand({
          TableName: config.conversationsTable,
          AttributeDefinitions: [{ AttributeName: "conversation_id", AttributeType: "S" }],
          KeySchema: [{ AttributeName: "conversation_id", KeyType: "HASH" }],
          BillingMode: "PAY_PER_REQUEST",
        }),
      );
      const ours = connectAws(config).documents;
      const table = config.conversationsTable;

      await sdk.documents.send(new PutCommand({ TableName: table, Item: EVERY_KIND }));
      const read = await ours.get({
        TableName: table,
        Key: { conversation_id: EVERY_KIND.conversation_id },
      });
      assert.deepEqual(read.Item, EVERY_KIND);

      const second = { ...EVERY_KIND, conversation_id: "second", dropped: undefined };
      await ours.put({ TableName: table, Item: second });
      const back = await sdk.documents.send(
        new GetCommand({ TableName: table, Key: { conversation_id: "second" } }),
      );
      const { dropped: _dropped, ...expected } = second;
      assert.deepEqual(
        back.Item,
        expected,
        "undefined is left out, as the SDK's removeUndefinedValues does",
      );
    } finally {
      sdk.destroy();
    }
  },
});

Deno.test("a value DynamoDB cannot hold is refused before sending, naming where it is", () => {
  assert.throws(
    () => toAttributeMap({ usage: { tokens: Number.NaN } }),
    /Cannot store NaN at "usage\.tokens"/,
  );
  assert.throws(
    () => toAttributeMap({ list: [1, new Date(0)] }),
    /Cannot store the Date at "list\[1\]"/,
  );
  assert.throws(() => toAttributeMap({ tags: new Set() }), /empty set at "tags"/);
});

/** A loopback server that answers each call with the next of `answers`, and records the calls. */
function answering(answers: (() => Response)[]) {
  const seen: { headers: Headers; body: string }[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    seen.push({ headers: req.headers, body: await req.text() });
    return (answers.shift() ?? (() => new Response("{}")))();
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

function service(url: string, onCall?: (operation: string) => void) {
  return new JsonService({
    service: "sqs",
    targetPrefix: "AmazonSQS",
    region: "eu-west-1",
    endpoint: url,
    credentials: () => Promise.resolve({ ...KEYS, sessionToken: "a-session-token" }),
    onCall,
  });
}

Deno.test("every call is signed for its service and region, names its operation, and carries no secret", async () => {
  const server = answering([json(200, { QueueUrl: "http://q" })]);
  try {
    const out = await service(server.url).call<{ QueueUrl: string }>("GetQueueUrl", {
      QueueName: "jobs",
    });
    assert.equal(out.QueueUrl, "http://q");
    const [{ headers, body }] = server.seen;
    assert.equal(headers.get("x-amz-target"), "AmazonSQS.GetQueueUrl");
    assert.equal(headers.get("content-type"), "application/x-amz-json-1.0");
    assert.equal(body, JSON.stringify({ QueueName: "jobs" }));
    assert.match(
      headers.get("authorization") ?? "",
      /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/eu-west-1\/sqs\/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, Signature=[0-9a-f]{64}$/,
    );
    assert.equal(headers.get("x-amz-security-token"), "a-session-token");
    const everything = [...headers.entries()].flat().join("\n") + body;
    assert.doesNotMatch(everything, /a-secret-never-shown/);
  } finally {
    await server.stop();
  }
});

Deno.test("a 5xx or a throttle is tried again, up to three attempts, as one call", async () => {
  const server = answering([
    json(500, { __type: "InternalFailure" }),
    json(400, {
      __type: "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
    }),
    json(200, { ok: 1 }),
    json(503, {}),
    json(503, {}),
    json(503, {}),
  ]);
  const calls: string[] = [];
  try {
    const sqs = service(server.url, (operation) => calls.push(operation));
    assert.deepEqual(await sqs.call("ReceiveMessage", {}), { ok: 1 });
    assert.equal(server.seen.length, 3, "three attempts");
    const err = await sqs.call("ReceiveMessage", {}).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof AwsServiceError);
    assert.equal(err.status, 503);
    assert.equal(server.seen.length, 6, "three more attempts, then the error");
    assert.deepEqual(calls, ["ReceiveMessage", "ReceiveMessage"], "each call counted once");
  } finally {
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
      const body = '{"MessageId":"m1"}';
      await conn.write(new TextEncoder().encode(
        "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\n" +
          `content-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
      ));
      conn.close();
    }
  })();
  try {
    const url = `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
    const out = await service(url).call("SendMessage", { QueueUrl: "q", MessageBody: "x" });
    assert.deepEqual(out, { MessageId: "m1" });
    assert.equal(accepted, 3, "two dropped connections, then an answer");
  } finally {
    listener.close();
    await serving.catch(() => {});
  }
});

Deno.test("with no server to reach, a call fails after its attempts with fetch's error as the cause", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const url = `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
  listener.close();
  const err = await service(url).call("SendMessage", {}).then(() => undefined, (e) => e);
  assert.ok(err instanceof AwsNetworkError, String(err));
  assert.ok(err.cause instanceof TypeError, `fetch's own error: ${err.cause}`);
  assert.match(err.message, /^sqs SendMessage got no answer: /);
});

Deno.test("a refusal is not tried again, and keeps its type, status, message and details", async () => {
  const server = answering([
    json(400, {
      __type: "com.amazonaws.sqs#QueueDoesNotExist",
      message: "The specified queue does not exist.",
    }, { "x-amzn-query-error": "AWS.SimpleQueueService.NonExistentQueue;Sender" }),
    () => new Response("<html>Internal error</html>", { status: 501 }),
  ]);
  try {
    const err = await service(server.url).call("GetQueueUrl", { QueueName: "gone" }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(isAwsError(err, "QueueDoesNotExist"), String(err));
    assert.equal(err.status, 400);
    assert.equal(err.code, "AWS.SimpleQueueService.NonExistentQueue");
    assert.equal(
      err.message,
      "sqs GetQueueUrl failed: 400 QueueDoesNotExist: The specified queue does not exist.",
    );
    assert.equal(server.seen.length, 1, "not tried again");
    assert.equal(isLastingError(err), true);
  } finally {
    await server.stop();
  }
});

Deno.test("an answer that is no JSON is named by its status, and only such a 5xx means an SQS without move tasks", async () => {
  const server = answering([
    () => new Response("<html>Not here</html>", { status: 404 }),
    () => new Response("<html>Broken</html>", { status: 500 }),
    () => new Response("<html>Broken</html>", { status: 500 }),
    () => new Response("<html>Broken</html>", { status: 500 }),
  ]);
  try {
    const sqs = service(server.url);
    const missing = await sqs.call("SendMessage", {}).then(() => undefined, (e: unknown) => e);
    assert.ok(isAwsError(missing, "Http404"), String(missing));
    const broken = await sqs.call("SendMessage", {}).then(() => undefined, (e: unknown) => e);
    assert.ok(isAwsError(broken, "Http500"), String(broken));
    assert.equal(server.seen.length, 4, "a 5xx is tried three times");
    assert.equal(lacksMoveTasks(broken), true, "Moto's page for an action it lacks");
    assert.equal(lacksMoveTasks(missing), false);
    const awsOwn = new AwsServiceError("InternalFailure", "500", 500, undefined, {});
    assert.equal(lacksMoveTasks(awsOwn), false, "AWS's own 500 is a failure, not a missing action");
  } finally {
    await server.stop();
  }
});

Deno.test("a cancelled transaction gives its reasons, with each reason's item as plain values", async () => {
  const server = answering([
    json(400, {
      __type: "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
      Message: "Transaction cancelled",
      CancellationReasons: [
        { Code: "None" },
        { Code: "ConditionalCheckFailed", Item: toAttributeMap({ job_id: "j", attempts: 2 }) },
      ],
    }),
  ]);
  try {
    const documents = connectTo(server.url).documents;
    const err = await documents.transactWrite({
      TransactItems: [{
        Update: {
          TableName: "T",
          Key: { job_id: "j" },
          UpdateExpression: "SET a = :a",
          ExpressionAttributeValues: { ":a": 1 },
        },
      }],
    }).then(() => undefined, (e: unknown) => e);
    assert.ok(isAwsError(err, "TransactionCanceledException"), String(err));
    assert.deepEqual(err.details.CancellationReasons, [
      { Code: "None" },
      { Code: "ConditionalCheckFailed", Item: { job_id: "j", attempts: 2 } },
    ]);
    const sent = JSON.parse(server.seen[0].body);
    assert.deepEqual(sent.TransactItems[0].Update.Key, { job_id: { S: "j" } });
    assert.deepEqual(sent.TransactItems[0].Update.ExpressionAttributeValues, { ":a": { N: "1" } });
  } finally {
    await server.stop();
  }
});

Deno.test({
  name:
    "without keys in the environment, the credentials come from the SDK's chain (here a profile's file)",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "aws-profile-" });
    const processEnv = await holdProcessEnv({
      AWS_ACCESS_KEY_ID: undefined,
      AWS_SECRET_ACCESS_KEY: undefined,
      AWS_SESSION_TOKEN: undefined,
      AWS_PROFILE: "gateway-test",
      AWS_SHARED_CREDENTIALS_FILE: `${dir}/credentials`,
      AWS_CONFIG_FILE: `${dir}/config`,
    });
    try {
      await Deno.writeTextFile(
        `${dir}/credentials`,
        "[gateway-test]\naws_access_key_id = AKIDFROMFILE\naws_secret_access_key = file-secret\n",
      );
      await Deno.writeTextFile(`${dir}/config`, "");

      const config = loadConfig({ BACKEND: "aws", AWS_REGION: "us-east-1" });
      assert.equal(config.awsCredentials, undefined, "no keys configured");
      const credentials = await credentialSource(config, sdkCredentialChain)();
      assert.equal(credentials.accessKeyId, "AKIDFROMFILE");
      assert.equal(credentials.secretAccessKey, "file-secret");
    } finally {
      await processEnv.release();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("without keys or a chain to find them (the Lambda), a call fails saying what to set", async () => {
  const config = loadConfig({ BACKEND: "aws", AWS_REGION: "us-east-1" });
  await assert.rejects(
    credentialSource(config)(),
    /No AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/,
  );
});

Deno.test("with keys configured, SQS calls are signed with them as the SDK sends them, and no chain is asked", async () => {
  const server = answering([json(200, { QueueUrl: "http://q" })]);
  try {
    const config = loadConfig({
      BACKEND: "aws",
      AWS_REGION: "eu-central-1",
      AWS_ENDPOINT_URL: server.url,
      AWS_ACCESS_KEY_ID: "AKIDCONFIGURED",
      AWS_SECRET_ACCESS_KEY: "configured-secret",
      AWS_SESSION_TOKEN: "token",
    });
    let chainAsked = 0;
    const { sqs } = connectAws(config, {
      credentialChain: () => {
        chainAsked++;
        return Promise.reject(new Error("not to be asked"));
      },
    });
    await sqs.call("GetQueueUrl", { QueueName: "jobs" });
    const [{ headers }] = server.seen;
    assert.match(
      headers.get("authorization") ?? "",
      /Credential=AKIDCONFIGURED\/\d{8}\/eu-central-1\/sqs\/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target;x-amzn-query-mode,/,
    );
    assert.equal(headers.get("x-amz-security-token"), "token");
    assert.equal(
      headers.get("x-amzn-query-mode"),
      "true",
      "as the SDK asks, for SQS's older codes",
    );
    assert.equal(chainAsked, 0);
  } finally {
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
  try {
    const err = await service(server.url).call("SendMessage", {}).then(() => undefined, (e) => e);
    assert.ok(isAwsError(err, "InvalidSignatureException"), String(err));
    assert.equal(
      err.message,
      "sqs SendMessage failed: 400 InvalidSignatureException: " +
        "The request signature we calculated does not match the signature you provided.",
    );
  } finally {
    await server.stop();
  }
});

Deno.test("every attempt of a transaction carries the same request token", async () => {
  const server = answering([json(500, {}), json(200, {})]);
  try {
    const documents = connectTo(server.url).documents;
    await documents.transactWrite({
      TransactItems: [{ Put: { TableName: "T", Item: { job_id: "j" } } }],
    });
    const tokens = server.seen.map(({ body }) => JSON.parse(body).ClientRequestToken);
    assert.equal(tokens.length, 2);
    assert.match(tokens[0], /^[0-9a-f-]{36}$/);
    assert.equal(tokens[1], tokens[0]);
  } finally {
    await server.stop();
  }
});

Deno.test({
  name:
    "on DynamoDB Local, a transaction applied but whose answer was lost is not refused when tried again, nor applied twice",
  ignore: skipWithoutAwsEmulators(),
  async fn() {
    const dynamodb = await sharedDynamoDbLocal();
    const table = `Tokens-${crypto.randomUUID().slice(0, 8)}`;
    const config = loadConfig({
      BACKEND: "aws",
      AWS_ENDPOINT_URL: dynamodb.url,
      AWS_ACCESS_KEY_ID: "test",
      AWS_SECRET_ACCESS_KEY: "test",
    });
    const sdk = createAwsClients(config);
    // Between the store and DynamoDB Local: the first transaction reaches it, its answer does not.
    let lost = 0;
    const proxy = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
      const forwarded = await fetch(new URL(new URL(req.url).pathname, dynamodb.url), {
        method: req.method,
        headers: req.headers,
        body: await req.arrayBuffer(),
      });
      const body = await forwarded.arrayBuffer();
      const target = req.headers.get("x-amz-target") ?? "";
      if (target.endsWith(".TransactWriteItems") && lost === 0) {
        lost++;
        return new Response("connection reset by a proxy", { status: 502 });
      }
      return new Response(body, { status: forwarded.status, headers: forwarded.headers });
    });
    try {
      await sdk.dynamo.send(
        new CreateTableCommand({
          TableName: table,
          AttributeDefinitions: [{ AttributeName: "job_id", AttributeType: "S" }],
          KeySchema: [{ AttributeName: "job_id", KeyType: "HASH" }],
          BillingMode: "PAY_PER_REQUEST",
        }),
      );
      const documents = connectTo(`http://127.0.0.1:${proxy.addr.port}`).documents;
      await documents.transactWrite({
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
      });
      assert.equal(lost, 1, "the first answer was lost");
      const count = await documents.get({ TableName: table, Key: { job_id: "count" } });
      assert.equal(count.Item?.applied, 1, "applied once");
    } finally {
      await proxy.shutdown();
      sdk.destroy();
    }
  },
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
    const headers = { date: new Date(serverNow).toUTCString() };
    // AWS refuses a signature more than 5 minutes off its own clock.
    return Math.abs(serverNow - signed) > 5 * 60_000
      ? Response.json({ __type: "InvalidSignatureException", message: "Signature expired" }, {
        status: 400,
        headers,
      })
      : Response.json({}, { headers });
  });
  try {
    const sqs = service(`http://127.0.0.1:${server.addr.port}`);
    assert.deepEqual(await sqs.call("DeleteMessage", {}), {});
    assert.equal(signedAt.length, 2, "refused once, then accepted");
    assert.ok(
      Math.abs(signedAt[1] - (Date.now() + serverAhead)) < 60_000,
      "signed on the server's time",
    );
    assert.deepEqual(await sqs.call("DeleteMessage", {}), {});
    assert.equal(signedAt.length, 3, "the next call is signed on the server's time from the start");
  } finally {
    await server.shutdown();
  }
});
