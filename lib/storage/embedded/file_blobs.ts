/**
 * Blobs as files under `DATA_DIR/blobs`, for the embedded backend. A blob not
 * put again for `BLOB_TTL_DAYS` is deleted, as the S3 bucket's lifecycle rule
 * deletes one not written again for as long: a chat that re-sends an image
 * every turn keeps it.
 */
import { blobRef, type BlobStore, parseBlobRef, type StoredBlob } from "../../core/blobs.ts";

const DAY_MS = 24 * 3600 * 1000;
/** A half-written file older than this was left by a process that stopped mid-write. */
const PARTIAL_MAX_AGE_MS = 3600 * 1000;

/** Options for {@linkcode FileBlobStore}. */
export interface FileBlobStoreOptions {
  /** Days a blob is kept after it was last put. */
  ttlDays: number;
}

/** A {@linkcode BlobStore} in a directory; a blob is written once, whole, under its content's name. */
export class FileBlobStore implements BlobStore {
  #dir: string;
  #ttlMs: number;

  constructor(dir: string, options: FileBlobStoreOptions) {
    this.#dir = dir;
    this.#ttlMs = options.ttlDays * DAY_MS;
  }

  async put(owner: string | undefined, bytes: Uint8Array, contentType: string): Promise<string> {
    const ref = await blobRef(owner, bytes, contentType);
    const { path } = parseBlobRef(ref)!;
    const file = `${this.#dir}/${path}`;
    const now = new Date();
    try {
      // Kept: its time is now, so it lasts another BLOB_TTL_DAYS.
      await Deno.utime(file, now, now);
      return ref;
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    const folder = file.slice(0, file.lastIndexOf("/"));
    await Deno.mkdir(folder, { recursive: true });
    // Written beside it, then renamed: a reader never sees half a blob.
    const partial = `${file}.${crypto.randomUUID()}.partial`;
    await Deno.writeFile(partial, bytes);
    await Deno.rename(partial, file);
    return ref;
  }

  async get(ref: string): Promise<StoredBlob | undefined> {
    const parsed = parseBlobRef(ref);
    if (!parsed) return undefined;
    try {
      return {
        bytes: await Deno.readFile(`${this.#dir}/${parsed.path}`),
        contentType: parsed.contentType,
      };
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return undefined;
      throw err;
    }
  }

  /** Deletes the blobs not put for `ttlDays`, and stale half-written files; returns how many. */
  async removeExpired(now: number = Date.now()): Promise<number> {
    let removed = 0;
    let owners: Deno.DirEntry[];
    try {
      owners = await Array.fromAsync(Deno.readDir(this.#dir));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return 0;
      throw err;
    }
    for (const owner of owners.filter((entry) => entry.isDirectory)) {
      const folder = `${this.#dir}/${owner.name}`;
      for await (const entry of Deno.readDir(folder)) {
        if (!entry.isFile) continue;
        const file = `${folder}/${entry.name}`;
        const maxAge = entry.name.endsWith(".partial") ? PARTIAL_MAX_AGE_MS : this.#ttlMs;
        const modified = (await Deno.stat(file).catch(() => undefined))?.mtime?.getTime();
        if (modified === undefined || now - modified <= maxAge) continue;
        await Deno.remove(file).then(() => removed++).catch((err) => {
          if (!(err instanceof Deno.errors.NotFound)) throw err;
        });
      }
    }
    return removed;
  }
}
