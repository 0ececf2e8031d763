/**
 * The embedded blob store keeps blobs as files and deletes them as S3's
 * lifecycle rule would, a stateless request's within a day; it bounds the
 * bytes each owner holds; and its files, like the database, are private.
 */
import assert from "node:assert/strict";
import { BlobQuotaError, blobRef, parseBlobRef } from "../lib/core/blobs.ts";
import { FileBlobStore } from "../lib/storage/embedded/file_blobs.ts";
import { startDeno } from "./support/child_deno.ts";

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

Deno.test("FileBlobStore keeps a short-lived blob a day, unless the same blob is kept for long", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "file-blobs-" });
  const blobs = new FileBlobStore(dir, { ttlDays: 30 });
  const shortFile = (ref: string) => `${dir}/day/${parseBlobRef(ref)!.path}`;
  const ageFile = (file: string, hours: number) => {
    const then = new Date(Date.now() - hours * 3600 * 1000);
    return Deno.utime(file, then, then);
  };
  try {
    await t.step("a short-lived blob reads back by the same reference", async () => {
      const ref = await blobs.put("0123456789abcdef", bytes("stateless"), "image/png", {
        shortLived: true,
      });
      assert.equal(ref, await blobRef("0123456789abcdef", bytes("stateless"), "image/png"));
      assert.equal(new TextDecoder().decode((await blobs.get(ref))!.bytes), "stateless");
      await ageFile(shortFile(ref), 22);
      assert.equal(await blobs.removeExpired(), 0, "kept 22 hours");
      await ageFile(shortFile(ref), 23.5);
      assert.equal(await blobs.removeExpired(), 1, "gone before a day, with the hourly sweep");
      assert.equal(await blobs.get(ref), undefined);
    });

    await t.step("a blob kept for long is not shortened by a short-lived put", async () => {
      const ref = await blobs.put(undefined, bytes("in a conversation"), "image/png");
      await blobs.put(undefined, bytes("in a conversation"), "image/png", { shortLived: true });
      await assert.rejects(Deno.stat(shortFile(ref)), Deno.errors.NotFound);
      await ageFile(`${dir}/${parseBlobRef(ref)!.path}`, 48);
      assert.equal(await blobs.removeExpired(), 0);
      assert.ok(await blobs.get(ref));
    });

    await t.step("a short-lived blob put for long gets a long-lived copy", async () => {
      const ref = await blobs.put(undefined, bytes("first stateless"), "image/png", {
        shortLived: true,
      });
      await blobs.put(undefined, bytes("first stateless"), "image/png");
      await ageFile(shortFile(ref), 25);
      assert.equal(await blobs.removeExpired(), 1, "the short-lived copy goes");
      assert.ok(await blobs.get(ref), "the long-lived one stays");
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("FileBlobStore bounds the bytes each owner holds, all of a put or none", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "file-blobs-" });
  const blobs = new FileBlobStore(dir, { ttlDays: 30, ownerMaxBytes: 100 });
  const owner = "0123456789abcdef";
  const sized = (n: number, fill: string) => ({
    bytes: bytes(fill.repeat(n)),
    contentType: "image/png",
  });
  try {
    await t.step("blobs within the bound are kept", async () => {
      await blobs.putAll(owner, [sized(30, "a"), sized(30, "b")]);
    });

    await t.step("blobs that would pass it are refused, all of them, saying how far", async () => {
      const err = await blobs.putAll(owner, [sized(20, "c"), sized(30, "d")]).catch((e) => e);
      assert.ok(err instanceof BlobQuotaError, String(err));
      assert.deepEqual([err.held, err.adding, err.limit], [60, 50, 100]);
      for (const blob of [sized(20, "c"), sized(30, "d")]) {
        assert.equal(
          await blobs.get(await blobRef(owner, blob.bytes, blob.contentType)),
          undefined,
        );
      }
    });

    await t.step("a blob held already costs nothing; another owner has its own bound", async () => {
      await blobs.putAll(owner, [sized(30, "a"), sized(40, "e")]);
      await blobs.put("fedcba9876543210", bytes("f".repeat(100)), "image/png");
    });

    await t.step("a new store counts what the files hold", async () => {
      const again = new FileBlobStore(dir, { ttlDays: 30, ownerMaxBytes: 100 });
      await assert.rejects(again.put(owner, bytes("g"), "image/png"), BlobQuotaError);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * Opens the embedded services in a child process under umask 000 (setting
 * the umask needs a permission the suite does not grant), keeps a blob of
 * each kind, and prints the mode of every file and folder it made.
 */
const OPEN_UNDER_NO_UMASK = `
  Deno.umask(0);
  const { loadConfig } = await import("./lib/core/config.ts");
  const { openEmbeddedServices } = await import("./lib/storage/embedded/open.ts");
  const dataDir = Deno.args[0];
  const services = await openEmbeddedServices(loadConfig({ BACKEND: "embedded", DATA_DIR: dataDir }));
  const bytes = (text) => new TextEncoder().encode(text);
  await services.store.getJob(crypto.randomUUID());
  await services.blobs.put("0123456789abcdef", bytes("private"), "image/png");
  await services.blobs.put(undefined, bytes("short"), "image/png", { shortLived: true });
  const modes = {};
  const walk = async (path) => {
    const info = await Deno.stat(path);
    modes[path.slice(dataDir.length) || "/"] = (info.mode & 0o777).toString(8);
    if (info.isDirectory) for await (const entry of Deno.readDir(path)) await walk(path + "/" + entry.name);
  };
  await walk(dataDir);
  services.close();
  console.log(JSON.stringify(modes));
`;

Deno.test("the embedded backend's database and blobs are its user's only, whatever the umask", async () => {
  const parent = await Deno.makeTempDir({ prefix: "modes-" });
  try {
    const child = startDeno(["eval", OPEN_UNDER_NO_UMASK, `${parent}/data`], {
      deadlineMs: 60_000,
    });
    const { code, output } = await child.exited;
    assert.equal(code, 0, output);
    const modes: Record<string, string> = JSON.parse(output.trim().split("\n").at(-1)!);
    const blobFiles = Object.keys(modes).filter((path) => path.endsWith(".png"));
    assert.equal(blobFiles.length, 2, output);
    for (const [path, mode] of Object.entries(modes)) {
      const folder = path === "/" || !/\.(png|sqlite3(-wal|-shm)?)$/.test(path);
      assert.equal(mode, folder ? "700" : "600", `${path} in ${JSON.stringify(modes)}`);
    }
    assert.equal(modes["/gateway.sqlite3"], "600");
  } finally {
    await Deno.remove(parent, { recursive: true });
  }
});
