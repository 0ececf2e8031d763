/**
 * The blob bucket on S3 (lib/storage/aws/s3_blobs.ts), through the gateway's
 * S3 client: on Moto with its signature checks on, and against loopback
 * servers for S3's errors and the bucket's expected owner.
 */
import assert from "node:assert/strict";
import { blobRef } from "../lib/core/blobs.ts";
import { S3BlobStore } from "../lib/storage/aws/s3_blobs.ts";
import { isLastingError } from "../lib/worker/outage.ts";
import { clientsAt } from "./support/aws_clients.ts";
import { motoUserWithChecks, routedTo, skipWithoutMoto, startMoto } from "./support/moto.ts";

Deno.test({
  name: "blobs on Moto with authentication on: botocore accepts the S3 client's signatures",
  ignore: skipWithoutMoto("the S3 signing test on Moto"),
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
      const bytes = new Uint8Array(300_000);
      for (let at = 0; at < bytes.length; at += 65_536) {
        crypto.getRandomValues(bytes.subarray(at, at + 65_536));
      }

      await t.step(
        "first, a wrong secret is refused (so the checks are on), as an error waiting will not heal, without the secret",
        async () => {
          const wrong = clientsAt(moto.url, {
            keys: { ...credentials, secretAccessKey: "not-the-secret" },
          });
          try {
            const blobs = new S3BlobStore(wrong.s3, { bucket: "gateway-blobs" });
            const err = await blobs.put(undefined, bytes, "image/png").then(
              () => undefined,
              (e: unknown) => e,
            );
            assert.ok(err instanceof Error, String(err));
            assert.equal(err.name, "SignatureDoesNotMatch");
            assert.equal(isLastingError(err), true);
            assert.doesNotMatch(err.message, /not-the-secret/);
          } finally {
            wrong.destroy();
          }
        },
      );

      const right = clientsAt(moto.url, { keys: credentials });
      try {
        const blobs = new S3BlobStore(right.s3, { bucket: "gateway-blobs" });
        await t.step("a blob put is read back, each call signed", async () => {
          const ref = await blobs.put("0123456789abcdef", bytes, "image/png");
          assert.deepEqual(await blobs.get(ref), { bytes, contentType: "image/png" });
        });

        await t.step("a blob that is not there reads as undefined", async () => {
          const never = await blobRef(undefined, new Uint8Array([1, 2, 3]), "image/png");
          assert.equal(await blobs.get(never), undefined);
        });
      } finally {
        right.destroy();
      }
    } finally {
      await moto.stop();
    }
  },
});

Deno.test("a blob put is tried again after S3's 503, and not after a missing bucket's 404", async () => {
  const seen: string[] = [];
  let failuresLeft = 1;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (req) => {
      await req.arrayBuffer();
      seen.push(`${req.method} ${new URL(req.url).pathname.split("/").slice(0, 3).join("/")}`);
      const xml = (code: string, status: number) =>
        new Response(`<Error><Code>${code}</Code><Message>${code}</Message></Error>`, {
          status,
          headers: { "content-type": "application/xml" },
        });
      if (new URL(req.url).pathname.startsWith("/gone/")) return xml("NoSuchBucket", 404);
      if (failuresLeft-- > 0) return xml("SlowDown", 503);
      return new Response(null, { status: 200 });
    },
  );
  const { s3, destroy } = clientsAt(`http://127.0.0.1:${server.addr.port}`);
  try {
    const bytes = new Uint8Array([1]);
    await new S3BlobStore(s3, { bucket: "b" }).put(undefined, bytes, "image/png");
    assert.deepEqual(seen, ["PUT /b/blobs", "PUT /b/blobs"]);

    const err = await new S3BlobStore(s3, { bucket: "gone" }).put(undefined, bytes, "image/png")
      .then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof Error, String(err));
    assert.equal(err.name, "NoSuchBucket");
    assert.equal(seen.length, 3, "not tried again");
  } finally {
    destroy();
    await server.shutdown();
  }
});

Deno.test("every blob call names the account that must own the bucket, in a signed header, asked once", async () => {
  const seen: Headers[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    await req.arrayBuffer();
    seen.push(req.headers);
    return new Response(req.method === "GET" ? "x" : null, { status: 200 });
  });
  const { s3, destroy } = clientsAt(`http://127.0.0.1:${server.addr.port}`);
  try {
    let asked = 0;
    const blobs = new S3BlobStore(s3, {
      bucket: "b",
      expectedOwner: () => Promise.resolve(String(++asked).padStart(12, "0")),
    });
    const ref = await blobs.put(undefined, new Uint8Array([1]), "image/png");
    await blobs.get(ref);
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
    destroy();
    await server.shutdown();
  }
});
