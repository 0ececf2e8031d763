/**
 * The Web Crypto SigV4 signer (lib/storage/aws/sigv4.ts), header for header
 * against the AWS SDK's own signer (`@smithy/signature-v4`, used here only),
 * and against AWS's documented example.
 */
import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import { Buffer } from "node:buffer";
import { SignatureV4 } from "@smithy/signature-v4";
import { type SignableRequest, type SigningScope, signRequest } from "../lib/storage/aws/sigv4.ts";
import { encodeKey } from "../lib/storage/aws/s3_objects.ts";

/** The SDK signer's hash, on Node's crypto (as s3_objects.ts had it before this signer). */
class Sha256 {
  #hash: ReturnType<typeof createHash> | ReturnType<typeof createHmac>;

  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.#hash = secret === undefined
      ? createHash("sha256")
      : createHmac("sha256", toBuffer(secret));
  }

  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.#hash.update(toBuffer(data));
  }

  digest(): Promise<Uint8Array> {
    return Promise.resolve(new Uint8Array(this.#hash.digest()));
  }
}

function toBuffer(data: string | ArrayBuffer | ArrayBufferView): Buffer {
  if (typeof data === "string") return Buffer.from(data, "utf8");
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.from(data);
}

/**
 * What the SDK's signer sends for the same request: for S3 as s3_objects.ts
 * signed before (path not escaped again, the payload hash set by the caller),
 * for other services with the path escaped and no payload hash header.
 */
async function sdkHeaders(
  request: SignableRequest,
  scope: SigningScope,
): Promise<Record<string, string>> {
  const signer = new SignatureV4({
    service: scope.service,
    region: scope.region,
    credentials: scope.credentials,
    sha256: Sha256,
    uriEscapePath: !scope.s3,
    applyChecksum: false,
  });
  const query: Record<string, string | string[]> = {};
  for (const [name, value] of request.url.searchParams) {
    const had = query[name];
    query[name] = had === undefined ? value : [had, value].flat();
  }
  const headers: Record<string, string> = { ...request.headers, host: request.url.host };
  if (scope.s3 && !headers["x-amz-content-sha256"]) {
    headers["x-amz-content-sha256"] = createHash("sha256").update(request.body ?? "").digest("hex");
  }
  const signed = await signer.sign({
    method: request.method,
    protocol: request.url.protocol,
    hostname: request.url.hostname,
    port: request.url.port ? Number(request.url.port) : undefined,
    path: request.url.pathname,
    query,
    headers,
    body: request.body,
  }, { signingDate: scope.signingDate });
  return signed.headers;
}

/** Signs with both signers and checks they send the same headers; returns ours. */
async function assertSignedAsTheSdkDoes(
  request: SignableRequest,
  scope: SigningScope,
): Promise<Record<string, string>> {
  const ours = await signRequest(request, scope);
  assert.deepEqual(ours, await sdkHeaders(request, scope));
  return ours;
}

const CREDENTIALS = {
  accessKeyId: "AKIDEXAMPLE",
  secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
};
const SIGNING_DATE = new Date("2026-03-14T15:09:26Z");
const utf8 = new TextEncoder();

/** A DynamoDB JSON-protocol call, as the store sends it. */
function dynamoGetItem(): SignableRequest {
  return {
    method: "POST",
    url: new URL("https://dynamodb.eu-central-1.amazonaws.com/"),
    headers: {
      "content-type": "application/x-amz-json-1.0",
      "x-amz-target": "DynamoDB_20120810.GetItem",
    },
    body: JSON.stringify({
      TableName: "gateway-jobs",
      Key: { pk: { S: "job#01J9 – ü" }, sk: { S: "meta" } },
    }),
  };
}

Deno.test("signRequest() signs a DynamoDB JSON POST as the SDK does", async () => {
  const headers = await assertSignedAsTheSdkDoes(dynamoGetItem(), {
    service: "dynamodb",
    region: "eu-central-1",
    credentials: CREDENTIALS,
    signingDate: SIGNING_DATE,
  });
  assert.equal(headers.host, "dynamodb.eu-central-1.amazonaws.com");
  assert.equal(headers["x-amz-date"], "20260314T150926Z");
  assert.equal(headers["x-amz-security-token"], undefined);
  assert.equal(headers["x-amz-content-sha256"], undefined, "only S3 gets the payload hash header");
  assert.match(
    headers.authorization,
    /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/20260314\/eu-central-1\/dynamodb\/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=[0-9a-f]{64}$/,
  );
});

Deno.test("signRequest() signs a DynamoDB JSON POST with a session token as the SDK does", async () => {
  const headers = await assertSignedAsTheSdkDoes(dynamoGetItem(), {
    service: "dynamodb",
    region: "eu-central-1",
    credentials: { ...CREDENTIALS, sessionToken: "FwoGZXIvYXdzEJr//////////wEaDEXAMPLE+token=" },
    signingDate: SIGNING_DATE,
  });
  assert.equal(headers["x-amz-security-token"], "FwoGZXIvYXdzEJr//////////wEaDEXAMPLE+token=");
  assert.match(headers.authorization, /SignedHeaders=[^,]*;x-amz-security-token;/);
});

Deno.test("signRequest() signs an SQS JSON POST with a byte body as the SDK does", async () => {
  await assertSignedAsTheSdkDoes({
    method: "POST",
    url: new URL("https://sqs.us-west-2.amazonaws.com/"),
    headers: {
      "content-type": "application/x-amz-json-1.0",
      "x-amz-target": "AmazonSQS.ReceiveMessage",
      "x-amzn-query-mode": "true",
    },
    body: utf8.encode(JSON.stringify({
      QueueUrl: "https://sqs.us-west-2.amazonaws.com/123456789012/llm-jobs",
      MaxNumberOfMessages: 10,
      WaitTimeSeconds: 20,
    })),
  }, { service: "sqs", region: "us-west-2", credentials: CREDENTIALS, signingDate: SIGNING_DATE });
});

Deno.test("signRequest() signs the port into host only when it is not the scheme's default", async () => {
  const scope = {
    service: "sqs",
    region: "us-east-1",
    credentials: CREDENTIALS,
    signingDate: SIGNING_DATE,
  };
  const request = (url: string): SignableRequest => ({
    method: "POST",
    url: new URL(url),
    headers: {
      "content-type": "application/x-amz-json-1.0",
      "x-amz-target": "AmazonSQS.ListQueues",
    },
    body: "{}",
  });
  const local = await assertSignedAsTheSdkDoes(request("http://127.0.0.1:4566/"), scope);
  assert.equal(local.host, "127.0.0.1:4566");
  const standard = await assertSignedAsTheSdkDoes(
    request("https://sqs.us-east-1.amazonaws.com:443/"),
    scope,
  );
  assert.equal(standard.host, "sqs.us-east-1.amazonaws.com");
});

Deno.test("signRequest() signs a GET with repeated and odd query parameters, an odd path and untidy header values as the SDK does", async () => {
  const url = new URL("https://example.us-east-1.amazonaws.com/some%20path//a/./b/../c/");
  url.search = "?b=2&a=z&a=y&a=%20&odd=%21%27%28%29%2A~-_.&plus=a%2Bb&space=a+b" +
    "&uni=%C3%BC%E2%82%AC&empty=&slash=a%2Fb%3Dc%26d&Upper=1&~tilde=%7E";
  const headers = await assertSignedAsTheSdkDoes({
    method: "GET",
    url,
    headers: { "x-amz-meta-note": "  several   spaces\tand a tab  ", accept: "application/json" },
  }, {
    service: "execute-api",
    region: "us-east-1",
    credentials: CREDENTIALS,
    signingDate: SIGNING_DATE,
  });
  assert.equal(headers["x-amz-meta-note"], "  several   spaces\tand a tab  ", "sent as given");
});

Deno.test("signRequest() signs S3 PUTs and GETs of keys with spaces, unicode, + and !'()* as the SDK does", async (t) => {
  const scope = {
    service: "s3",
    region: "eu-west-1",
    credentials: CREDENTIALS,
    s3: true,
    signingDate: SIGNING_DATE,
  };
  for (
    const key of ["blobs/a b/c d.png", "blobs/ü/日本語€.json", "blobs/1+1=2", "blobs/!'()*.txt"]
  ) {
    const url = new URL(`https://gateway-blobs.s3.eu-west-1.amazonaws.com/${encodeKey(key)}`);
    await t.step(`a PUT of ${JSON.stringify(key)}`, async () => {
      const headers = await assertSignedAsTheSdkDoes({
        method: "PUT",
        url,
        headers: { "content-type": "image/png", "x-amz-expected-bucket-owner": "123456789012" },
        body: utf8.encode(`the bytes of ${key}`),
      }, scope);
      assert.equal(
        headers["x-amz-content-sha256"],
        createHash("sha256").update(`the bytes of ${key}`).digest("hex"),
      );
    });
    await t.step(`a GET of ${JSON.stringify(key)}`, async () => {
      await assertSignedAsTheSdkDoes({ method: "GET", url, headers: {} }, scope);
    });
  }
  await t.step("a PUT whose caller sent UNSIGNED-PAYLOAD keeps it", async () => {
    const headers = await assertSignedAsTheSdkDoes({
      method: "PUT",
      url: new URL("https://gateway-blobs.s3.eu-west-1.amazonaws.com/blobs/x"),
      headers: { "x-amz-content-sha256": "UNSIGNED-PAYLOAD" },
      body: utf8.encode("not hashed"),
    }, scope);
    assert.equal(headers["x-amz-content-sha256"], "UNSIGNED-PAYLOAD");
  });
});

Deno.test("signRequest() gives the signature of AWS's documented IAM ListUsers example", async () => {
  // docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
  const headers = await signRequest({
    method: "GET",
    url: new URL("https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08"),
    headers: { "content-type": "application/x-www-form-urlencoded; charset=utf-8" },
  }, {
    service: "iam",
    region: "us-east-1",
    credentials: CREDENTIALS,
    signingDate: new Date("2015-08-30T12:36:00Z"),
  });
  assert.equal(
    headers.authorization,
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, " +
      "SignedHeaders=content-type;host;x-amz-date, " +
      "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
  );
});

Deno.test("signRequest() gives the signature of AWS's documented S3 list objects example, with its query", async () => {
  // docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html
  const headers = await signRequest({
    method: "GET",
    url: new URL("https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J"),
    headers: {},
  }, {
    service: "s3",
    region: "us-east-1",
    credentials: {
      accessKeyId: "AKIAIOSFODNN7EXAMPLE",
      secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    },
    s3: true,
    signingDate: new Date("2013-05-24T00:00:00Z"),
  });
  assert.equal(
    headers.authorization,
    "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, " +
      "SignedHeaders=host;x-amz-content-sha256;x-amz-date, " +
      "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
  );
});

Deno.test("signRequest() signs with its cached key as with a fresh one, and derives a new key on a new day", async () => {
  const request = dynamoGetItem();
  const at = (date: string) => ({
    service: "dynamodb",
    region: "eu-central-1",
    credentials: { ...CREDENTIALS, secretAccessKey: "a secret only this test uses" },
    signingDate: new Date(date),
  });
  const signature = (headers: Record<string, string>) => headers.authorization.slice(-64);

  const first = await assertSignedAsTheSdkDoes(request, at("2026-05-01T23:59:58Z"));
  const again = await assertSignedAsTheSdkDoes(request, at("2026-05-01T23:59:58Z"));
  assert.equal(signature(again), signature(first), "the cached key signs as the fresh one did");
  const nextDay = await assertSignedAsTheSdkDoes(request, at("2026-05-02T00:00:01Z"));
  assert.notEqual(signature(nextDay), signature(first));
  await assertSignedAsTheSdkDoes(request, at("2026-05-01T12:00:00Z"));

  // More regions than the cache holds push the first keys out; they are derived again.
  for (let n = 0; n < 40; n++) {
    await signRequest(request, { ...at("2026-05-01T12:00:00Z"), region: `test-region-${n}` });
  }
  await assertSignedAsTheSdkDoes(request, at("2026-05-01T23:59:58Z"));
  await assertSignedAsTheSdkDoes(request, at("2026-05-02T00:00:01Z"));
});

Deno.test("signRequest() leaves the request's headers as they were and signs a stale authorization afresh", async () => {
  const request = dynamoGetItem();
  const before = structuredClone(request.headers);
  const scope = {
    service: "dynamodb",
    region: "eu-central-1",
    credentials: CREDENTIALS,
    signingDate: SIGNING_DATE,
  };
  const headers = await signRequest(request, scope);
  assert.deepEqual(request.headers, before);
  const resigned = await signRequest({ ...request, headers }, scope);
  assert.deepEqual(resigned, headers);
});

Deno.test("signRequest() refuses credentials without an access key id, and never names the secret", async () => {
  const err = await signRequest(dynamoGetItem(), {
    service: "dynamodb",
    region: "eu-central-1",
    credentials: { accessKeyId: "", secretAccessKey: "do-not-print-me" },
  }).then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof TypeError, String(err));
  assert.match(err.message, /^Cannot sign request: /);
  assert.doesNotMatch(err.message, /do-not-print-me/);
});
