/**
 * Blobs in an S3 bucket, under `blobs/`, expired by the bucket's lifecycle
 * rules: `BLOB_TTL_DAYS` after they were last written, and a day for those of
 * a stateless request (`blobs/day/`, a rule of its own; where two rules meet,
 * S3 keeps to the shorter). A blob written again starts its time over.
 */
import type { S3Client } from "@aws-sdk/client-s3";
import {
  type BlobPutOptions,
  blobRef,
  type BlobStore,
  parseBlobRef,
  type StoredBlob,
} from "../../core/blobs.ts";

/** The key prefix of every blob; the lifecycle rules and the IAM policies name it. */
export const BLOB_PREFIX = "blobs/";
/** The key prefix of the blobs kept a day; under {@linkcode BLOB_PREFIX}, so the policies cover it. */
export const SHORT_LIVED_PREFIX = `${BLOB_PREFIX}day/`;

/**
 * The bytes each owner's blobs take, counted as they are written: it refuses
 * (with a `BlobQuotaError`) what would take an owner past the limit.
 */
export interface BlobByteCount {
  /** Counts `bytes` more for `owner`, or throws `BlobQuotaError` and counts nothing. */
  add(owner: string, bytes: number): Promise<void>;
}

/** Where the blobs are. */
export interface S3BlobOptions {
  bucket: string;
  /**
   * The account that must own the bucket, sent with every call so that S3
   * refuses a bucket of the same name that someone else owns (bucket names
   * are global). Asked once it succeeds; undefined names no owner.
   */
  expectedOwner?: () => Promise<string | undefined>;
  /** Bounds the bytes an owner's blobs take (`BLOB_KEY_MAX_BYTES`); unbounded without it. */
  byteCount?: BlobByteCount;
}

/** One blob to write: where, and whether it is new to the bucket (so it counts). */
interface Placement {
  key: string;
  blob: StoredBlob;
  exists: boolean;
}

/** A {@linkcode BlobStore} on S3. */
export class S3BlobStore implements BlobStore {
  #s3: () => Promise<S3Client>;
  #options: S3BlobOptions;
  #owner: Promise<string | undefined> | undefined;

  /** `s3` gives the process's S3 client, loaded at the first blob (clients.ts). */
  constructor(s3: () => Promise<S3Client>, options: S3BlobOptions) {
    this.#s3 = s3;
    this.#options = options;
  }

  async put(
    owner: string | undefined,
    bytes: Uint8Array,
    contentType: string,
    options: BlobPutOptions = {},
  ): Promise<string> {
    return (await this.putAll(owner, [{ bytes, contentType }], options))[0];
  }

  /**
   * Writes every blob, after counting those new to the bucket against their
   * owner's bytes: a refused lot writes nothing. A blob the bucket holds is
   * written again, so its time starts over, and costs nothing.
   */
  async putAll(
    owner: string | undefined,
    blobs: readonly StoredBlob[],
    options: BlobPutOptions = {},
  ): Promise<string[]> {
    const refs = await Promise.all(blobs.map((b) => blobRef(owner, b.bytes, b.contentType)));
    const distinct = new Map<string, StoredBlob>();
    refs.forEach((ref, i) => distinct.set(ref, blobs[i]));
    const placements = await Promise.all(
      [...distinct].map(([ref, blob]) => this.#place(parseBlobRef(ref)!.path, blob, options)),
    );
    const adding = placements.filter((p) => !p.exists)
      .reduce((sum, p) => sum + p.blob.bytes.length, 0);
    if (adding > 0) await this.#options.byteCount?.add(owner ?? "_", adding);
    const [s3, { putObject }, expectedOwner] = await this.#prepare();
    await Promise.all(
      placements.map((p) =>
        putObject(s3, { bucket: this.#options.bucket, key: p.key, expectedOwner }, p.blob)
      ),
    );
    return refs;
  }

  async get(ref: string): Promise<StoredBlob | undefined> {
    const parsed = parseBlobRef(ref);
    if (!parsed) return undefined;
    const [s3, { getObject }, expectedOwner] = await this.#prepare();
    // The worker may list the prefix (template.yaml), so a missing key is a 404, not a 403.
    for (const prefix of [BLOB_PREFIX, SHORT_LIVED_PREFIX]) {
      const bytes = await getObject(s3, {
        bucket: this.#options.bucket,
        key: prefix + parsed.path,
        expectedOwner,
      });
      if (bytes) return { bytes, contentType: parsed.contentType };
    }
    return undefined;
  }

  /**
   * Where a blob goes: a long-lived copy, if the bucket has one, serves a
   * short-lived put too, so a short-lived put never shortens a blob's life.
   * Whether the bucket holds it is asked only when owners' bytes are counted.
   */
  async #place(path: string, blob: StoredBlob, options: BlobPutOptions): Promise<Placement> {
    const long = BLOB_PREFIX + path;
    const counted = this.#options.byteCount !== undefined;
    if (!options.shortLived && !counted) return { key: long, blob, exists: false };
    if (await this.#has(long)) return { key: long, blob, exists: true };
    if (!options.shortLived) return { key: long, blob, exists: false };
    const short = SHORT_LIVED_PREFIX + path;
    return { key: short, blob, exists: counted && await this.#has(short) };
  }

  async #has(key: string): Promise<boolean> {
    const [s3, { hasObject }, expectedOwner] = await this.#prepare();
    return await hasObject(s3, { bucket: this.#options.bucket, key, expectedOwner });
  }

  /** The client, its calls and the bucket's expected owner. */
  #prepare() {
    return Promise.all([this.#s3(), import("./s3_calls.ts"), this.#expectedOwner()]);
  }

  #expectedOwner(): Promise<string | undefined> {
    if (!this.#options.expectedOwner) return Promise.resolve(undefined);
    this.#owner ??= this.#options.expectedOwner().catch((err) => {
      this.#owner = undefined; // asked again next time
      throw err;
    });
    return this.#owner;
  }
}
