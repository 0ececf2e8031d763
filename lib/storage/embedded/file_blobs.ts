/**
 * Blobs as files under `DATA_DIR/blobs`, for the embedded backend. A blob not
 * put again for `BLOB_TTL_DAYS` is deleted, as the S3 bucket's lifecycle rule
 * deletes one not written again for as long: a chat that re-sends an image
 * every turn keeps it. A short-lived blob (a stateless request's) lives under
 * `day/` and goes within a day of its last put; the reference is the same, so
 * a reader looks in both places.
 *
 * The store counts the bytes each owner's blobs take, and refuses blobs that
 * would take an owner past `ownerMaxBytes`. The count is read from the files
 * when an owner first puts after start-up or after a sweep of expired blobs,
 * then kept as blobs are put: one process writes the folder (the embedded
 * gateway runs its worker in the same process).
 *
 * Files are readable by their owner only (0600, folders 0700), whatever the
 * umask: they hold what clients sent.
 */
import {
  type BlobPutOptions,
  BlobQuotaError,
  blobRef,
  type BlobStore,
  parseBlobRef,
  type StoredBlob,
} from "../../core/blobs.ts";

const DAY_MS = 24 * 3600 * 1000;
/** A half-written file older than this was left by a process that stopped mid-write. */
const PARTIAL_MAX_AGE_MS = 3600 * 1000;
/** The folder of short-lived blobs, beside the owners' folders. */
const DAY_FOLDER = "day";
/**
 * How long a short-lived blob is kept after its last put: with the hourly
 * sweep (lib/storage/embedded/open.ts), it is gone within a day.
 */
const SHORT_LIVED_MS = DAY_MS - 3600 * 1000;
const FILE_MODE = 0o600;
const FOLDER_MODE = 0o700;

/** Options for {@linkcode FileBlobStore}. */
export interface FileBlobStoreOptions {
  /** Days a blob is kept after it was last put. */
  ttlDays: number;
  /** The most bytes one owner's blobs may take (`BLOB_KEY_MAX_BYTES`); no bound when absent. */
  ownerMaxBytes?: number;
}

/** Where a blob's file is, or would be, and whether it is there. */
interface Placement {
  file: string;
  bytes: Uint8Array;
  exists: boolean;
}

/** A {@linkcode BlobStore} in a directory; a blob is written once, whole, under its content's name. */
export class FileBlobStore implements BlobStore {
  #dir: string;
  #ttlMs: number;
  #ownerMaxBytes: number;
  /** Bytes held per owner folder name, read from the files once, then counted. */
  #held = new Map<string, Promise<{ bytes: number }>>();

  constructor(dir: string, options: FileBlobStoreOptions) {
    this.#dir = dir;
    this.#ttlMs = options.ttlDays * DAY_MS;
    this.#ownerMaxBytes = options.ownerMaxBytes ?? Infinity;
  }

  async put(
    owner: string | undefined,
    bytes: Uint8Array,
    contentType: string,
    options: BlobPutOptions = {},
  ): Promise<string> {
    return (await this.putAll(owner, [{ bytes, contentType }], options))[0];
  }

  async putAll(
    owner: string | undefined,
    blobs: readonly StoredBlob[],
    options: BlobPutOptions = {},
  ): Promise<string[]> {
    const refs = await Promise.all(blobs.map((b) => blobRef(owner, b.bytes, b.contentType)));
    const distinct = new Map<string, Uint8Array>();
    refs.forEach((ref, i) => distinct.set(ref, blobs[i].bytes));
    const placements = await Promise.all(
      [...distinct].map(([ref, bytes]) => this.#place(ref, bytes, options)),
    );
    const fresh = placements.filter((p) => !p.exists);
    const adding = fresh.reduce((sum, p) => sum + p.bytes.length, 0);
    const held = await this.#heldBy(owner ?? "_");
    // Checked and counted at once, with no wait between: two requests cannot both take the last room.
    if (adding > 0 && held.bytes + adding > this.#ownerMaxBytes) {
      throw new BlobQuotaError(held.bytes, adding, this.#ownerMaxBytes);
    }
    held.bytes += adding;
    try {
      await Promise.all(placements.map((p) => p.exists ? touch(p) : write(p)));
    } catch (err) {
      held.bytes -= adding;
      throw err;
    }
    return refs;
  }

  async get(ref: string): Promise<StoredBlob | undefined> {
    const parsed = parseBlobRef(ref);
    if (!parsed) return undefined;
    for (const file of [this.#longFile(parsed.path), this.#shortFile(parsed.path)]) {
      try {
        return { bytes: await Deno.readFile(file), contentType: parsed.contentType };
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      }
    }
    return undefined;
  }

  /**
   * Deletes the blobs not put for `ttlDays` (short-lived ones: for a day),
   * and stale half-written files; returns how many.
   */
  async removeExpired(now: number = Date.now()): Promise<number> {
    let removed = 0;
    for (const [folder, maxAge] of await this.#ownerFolders()) {
      for await (const entry of Deno.readDir(folder)) {
        if (!entry.isFile) continue;
        const file = `${folder}/${entry.name}`;
        const age = entry.name.endsWith(".partial") ? PARTIAL_MAX_AGE_MS : maxAge;
        const modified = (await Deno.stat(file).catch(() => undefined))?.mtime?.getTime();
        if (modified === undefined || now - modified <= age) continue;
        await Deno.remove(file).then(() => removed++).catch((err) => {
          if (!(err instanceof Deno.errors.NotFound)) throw err;
        });
      }
    }
    // Read again from the files at each owner's next put, so a count that drifted is put right.
    this.#held.clear();
    return removed;
  }

  /** Where a blob goes: a long-lived copy, if there is one, serves a short-lived put too. */
  async #place(ref: string, bytes: Uint8Array, options: BlobPutOptions): Promise<Placement> {
    const path = parseBlobRef(ref)!.path;
    const long = this.#longFile(path);
    if (await exists(long)) return { file: long, bytes, exists: true };
    if (!options.shortLived) return { file: long, bytes, exists: false };
    const short = this.#shortFile(path);
    return { file: short, bytes, exists: await exists(short) };
  }

  #longFile(path: string): string {
    return `${this.#dir}/${path}`;
  }

  #shortFile(path: string): string {
    return `${this.#dir}/${DAY_FOLDER}/${path}`;
  }

  /** The count of an owner's bytes: both its folders' files, read once. */
  #heldBy(owner: string): Promise<{ bytes: number }> {
    let held = this.#held.get(owner);
    if (!held) {
      held = Promise.all([
        folderBytes(`${this.#dir}/${owner}`),
        folderBytes(`${this.#dir}/${DAY_FOLDER}/${owner}`),
      ]).then(([long, short]) => ({ bytes: long + short }));
      this.#held.set(owner, held);
      held.catch(() => this.#held.delete(owner));
    }
    return held;
  }

  /** Every owner's folder and how long its blobs are kept. */
  async #ownerFolders(): Promise<[string, number][]> {
    const folders: [string, number][] = [];
    const list = async (dir: string, maxAge: number) => {
      try {
        for await (const entry of Deno.readDir(dir)) {
          if (!entry.isDirectory) continue;
          if (dir === this.#dir && entry.name === DAY_FOLDER) {
            await list(`${dir}/${DAY_FOLDER}`, SHORT_LIVED_MS);
          } else folders.push([`${dir}/${entry.name}`, maxAge]);
        }
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      }
    };
    await list(this.#dir, this.#ttlMs);
    return folders;
  }
}

/** Puts a blob that is there already: its time is now, so it lasts another while. */
async function touch(placement: Placement): Promise<void> {
  const now = new Date();
  try {
    await Deno.utime(placement.file, now, now);
  } catch (err) {
    // Swept away since it was looked at: written again.
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    await write(placement);
  }
}

/** Writes a blob beside its place, then renames it there: a reader never sees half a blob. */
async function write({ file, bytes }: Placement): Promise<void> {
  await Deno.mkdir(file.slice(0, file.lastIndexOf("/")), { recursive: true, mode: FOLDER_MODE });
  const partial = `${file}.${crypto.randomUUID()}.partial`;
  await Deno.writeFile(partial, bytes, { mode: FILE_MODE });
  await Deno.rename(partial, file);
}

async function exists(file: string): Promise<boolean> {
  try {
    await Deno.stat(file);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

/** The bytes of the whole blobs in a folder (none when it is not there). */
async function folderBytes(folder: string): Promise<number> {
  let bytes = 0;
  try {
    for await (const entry of Deno.readDir(folder)) {
      if (!entry.isFile || entry.name.endsWith(".partial")) continue;
      bytes += (await Deno.stat(`${folder}/${entry.name}`).catch(() => undefined))?.size ?? 0;
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return bytes;
}
