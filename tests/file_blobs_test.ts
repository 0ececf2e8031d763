/** The embedded blob store keeps blobs as files and deletes them as S3's lifecycle rule would. */
import assert from "node:assert/strict";
import { parseBlobRef } from "../lib/core/blobs.ts";
import { FileBlobStore } from "../lib/storage/embedded/file_blobs.ts";

const DAY_MS = 24 * 3600 * 1000;
const bytes = (text: string) => new TextEncoder().encode(text);

Deno.test("FileBlobStore.removeExpired() deletes blobs not put for BLOB_TTL_DAYS, and keeps those put again", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "file-blobs-" });
  const blobs = new FileBlobStore(dir, { ttlDays: 30 });
  const fileOf = (ref: string) => `${dir}/${parseBlobRef(ref)!.path}`;
  const age = (ref: string, days: number) => {
    const then = new Date(Date.now() - days * DAY_MS);
    return Deno.utime(fileOf(ref), then, then);
  };
  try {
    await t.step("a blob reads back whole, with its type", async () => {
      const ref = await blobs.put("0123456789abcdef", bytes("an image"), "image/png");
      const blob = await blobs.get(ref);
      assert.equal(new TextDecoder().decode(blob!.bytes), "an image");
      assert.equal(blob!.contentType, "image/png");
    });

    await t.step("one older than the limit is deleted; a younger one stays", async () => {
      const old = await blobs.put(undefined, bytes("old"), "application/json");
      const young = await blobs.put(undefined, bytes("young"), "application/json");
      await age(old, 31);
      await age(young, 29);
      assert.equal(await blobs.removeExpired(), 1);
      assert.equal(await blobs.get(old), undefined);
      assert.ok(await blobs.get(young), "the younger blob is kept");
    });

    await t.step("putting a blob again starts its time over, as a new S3 PUT does", async () => {
      const resent = await blobs.put(undefined, bytes("re-sent every turn"), "image/png");
      await age(resent, 31);
      assert.equal(await blobs.put(undefined, bytes("re-sent every turn"), "image/png"), resent);
      assert.equal(await blobs.removeExpired(), 0);
      assert.ok(await blobs.get(resent), "the re-sent blob is kept");
    });

    await t.step("a half-written file left by a stopped process goes after an hour", async () => {
      const partial = `${dir}/_/abc.png.4f2c.partial`;
      await Deno.writeFile(partial, bytes("half"));
      assert.equal(await blobs.removeExpired(), 0, "one being written now stays");
      const then = new Date(Date.now() - 2 * 3600 * 1000);
      await Deno.utime(partial, then, then);
      assert.equal(await blobs.removeExpired(), 1);
      await assert.rejects(Deno.stat(partial), Deno.errors.NotFound);
    });

    await t.step("a store whose folder does not exist yet has nothing to delete", async () => {
      const empty = new FileBlobStore(`${dir}/not-yet`, { ttlDays: 1 });
      assert.equal(await empty.removeExpired(), 0);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
