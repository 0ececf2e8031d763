/**
 * The blob bucket's objects over signed fetch (lib/storage/aws/s3_objects.ts):
 * signatures that match AWS's published S3 examples, signatures Moto checks
 * with botocore's own signer once its authentication is on, and S3's errors
 * and retries as a loopback server gives them.
 */
import assert from "node:assert/strict";
import {
  encodeKey,
  S3Objects,
  S3RequestError,
  signS3Request,
} from "../lib/storage/aws/s3_objects.ts";
import { motoUnavailable, motoUserWithChecks, routedTo, startMoto } from "./support/moto.ts";

/** The credentials of AWS's signing examples. */
const EXAMPLE_SIGNER = {
  region: "us-east-1",
  credentials: {
    accessKeyId: "AKIAIOSFODNN7EXAMPLE",
    secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
  },
};
const EXAMPLE_DATE = new Date("2013-05-24T00:00:00Z");

Deno.test("signS3Request() gives the signature of AWS's GET Object example", async () => {
  const headers = await signS3Request(
    {
      method: "GET",
      url: new URL("https://examplebucket.s3.amazonaws.com/test.txt"),
      headers: { range: "bytes=0-9" },
    },
    EXAMPLE_SIGNER,
    EXAMPLE_DATE,
  );
  assert.equal(
    headers.authorization,
    "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, " +
      "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, " +
      "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
  );
});

Deno.test("signS3Request() gives the signature of AWS's PUT Object example", async () => {
  const headers = await signS3Request(
    {
      method: "PUT",
      url: new URL(`https://examplebucket.s3.amazonaws.com/${encodeKey("test$file.text")}`),
      headers: {
        date: "Fri, 24 May 2013 00:00:00 GMT",
        "x-amz-storage-class": "REDUCED_REDUNDANCY",
      },
      body: new TextEncoder().encode("Welcome to Amazon S3."),
    },
    EXAMPLE_SIGNER,
    EXAMPLE_DATE,
  );
  assert.equal(
    headers["x-amz-content-sha256"],
    "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
  );
  assert.equal(
    headers.authorization,
    "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, " +
      "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, " +
      "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
  );
});

Deno.test("encodeKey() percent-encodes each segment as S3 does and keeps the slashes", () => {
  assert.equal(encodeKey("blobs/a b/ü!(x)*.png"), "blobs/a%20b/%C3%BC%21%28x%29%2A.png");
  assert.equal(encodeKey("blobs/_/ab12.json"), "blobs/_/ab12.json");
});

Deno.test({
  name: "S3Objects on Moto with authentication on: botocore finds our signatures right",
  ignore: (() => {
    const reason = motoUnavailable();
    if (reason && Deno.env.get("CI")) {
      throw new Error(`Cannot run the S3 signing test in CI: ${reason}`);
    }
    if (reason) console.warn(`\n!!! SKIPPING the S3 signing test on Moto: ${reason}\n`);
    return reason !== undefined;
  })(),
  async fn(t) {
    const moto = await startMoto();
    try {
      // The bucket is made before Moto's checks start; every call after it is checked.
      const credentials = await motoUserWithChecks(moto, ["s3:*"], 1);
      const bucket = await fetch(`${moto.url}/gateway-blobs`, {
        method: "PUT",
        headers: routedTo("s3"),
      });
      assert.equal(bucket.status, 200, await bucket.text());

      const objects = new S3Objects({
        bucket: "gateway-blobs",
        region: "us-east-1",
        credentials,
        endpoint: moto.url,
      });
      const bytes = new Uint8Array(300_000);
      for (let at = 0; at < bytes.length; at += 65_536) {
        crypto.getRandomValues(bytes.subarray(at, at + 65_536));
      }

      await t.step(
        "first, a wrong secret is refused with S3's code (so the checks are on), and the secret is not in the error",
        async () => {
          const wrong = new S3Objects({
            bucket: "gateway-blobs",
            region: "us-east-1",
            credentials: { ...credentials, secretAccessKey: "not-the-secret" },
            endpoint: moto.url,
          });
          const err = await wrong.put("blobs/_/other.png", bytes, "image/png").then(
            () => undefined,
            (e: unknown) => e,
          );
          assert.ok(err instanceof S3RequestError, String(err));
          assert.equal(err.status, 403);
          assert.equal(err.code, "SignatureDoesNotMatch");
          assert.doesNotMatch(err.message, /not-the-secret/);
        },
      );
      await t.step("a put and a get, each signed, give back the same bytes", async () => {
        await objects.put("blobs/_/image.png", bytes, "image/png");
        const object = await objects.get("blobs/_/image.png");
        assert.deepEqual(object?.bytes, bytes);
        assert.equal(object?.contentType, "image/png");
      });

      await t.step("a key that is not there reads as undefined", async () => {
        assert.equal(await objects.get("blobs/_/missing.png"), undefined);
      });
    } finally {
      await moto.stop();
    }
  },
});

Deno.test("S3Objects tries again after a 503, and not after a 404 on a put", async () => {
  const seen: string[] = [];
  let failuresLeft = 1;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (req) => {
      await req.arrayBuffer();
      seen.push(`${req.method} ${new URL(req.url).pathname}`);
      if (new URL(req.url).pathname.startsWith("/gone/")) {
        return new Response("<Error><Code>NoSuchBucket</Code></Error>", { status: 404 });
      }
      if (failuresLeft-- > 0) {
        return new Response("<Error><Code>SlowDown</Code></Error>", { status: 503 });
      }
      return new Response(null, { status: 200 });
    },
  );
  try {
    const endpoint = `http://127.0.0.1:${server.addr.port}`;
    const signer = { region: "us-east-1", credentials: EXAMPLE_SIGNER.credentials, endpoint };
    await new S3Objects({ ...signer, bucket: "b" }).put("k", new Uint8Array([1]), "image/png");
    assert.deepEqual(seen, ["PUT /b/k", "PUT /b/k"]);

    const err = await new S3Objects({ ...signer, bucket: "gone" })
      .put("k", new Uint8Array([1]), "image/png")
      .then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof S3RequestError, String(err));
    assert.equal(err.code, "NoSuchBucket");
    assert.equal(seen.length, 3);
  } finally {
    await server.shutdown();
  }
});

Deno.test("S3Objects names the account that must own the bucket, in a signed header", async () => {
  const seen: Headers[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    await req.arrayBuffer();
    seen.push(req.headers);
    return new Response(null, { status: 200 });
  });
  try {
    let asked = 0;
    const objects = new S3Objects({
      bucket: "b",
      region: "us-east-1",
      credentials: EXAMPLE_SIGNER.credentials,
      endpoint: `http://127.0.0.1:${server.addr.port}`,
      expectedBucketOwner: () => Promise.resolve(String(++asked).padStart(12, "0")),
    });
    await objects.put("k", new Uint8Array([1]), "image/png");
    await objects.get("k");
    assert.deepEqual(seen.map((h) => h.get("x-amz-expected-bucket-owner")), [
      "000000000001",
      "000000000001",
    ]);
    assert.match(
      seen[0].get("authorization") ?? "",
      /SignedHeaders=[^,]*x-amz-expected-bucket-owner/,
    );
    assert.equal(asked, 1, "asked once");
  } finally {
    await server.shutdown();
  }
});
