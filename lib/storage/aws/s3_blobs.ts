/** Blobs in an S3 bucket, under `blobs/`, expired by the bucket's lifecycle rule. */
import type { S3Client } from "@aws-sdk/client-s3";
import { blobRef, type BlobStore, parseBlobRef, type StoredBlob } from "../../core/blobs.ts";

/** The key prefix of every blob; the lifecycle rule and the IAM policies name it. */
export const BLOB_PREFIX = "blobs/";

/** Where the blobs are. */
export interface S3BlobOptions {
  bucket: string;
  /**
   * The account that must own the bucket, sent with every call so that S3
   * refuses a bucket of the same name that someone else owns (bucket names
   * are global). Asked once it succeeds; undefined names no owner.
   */
  expectedOwner?: () => Promise<string | undefined>;
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

  async put(owner: string | undefined, bytes: Uint8Array, contentType: string): Promise<string> {
    const ref = await blobRef(owner, bytes, contentType);
    const [s3, { putObject }, expectedOwner] = await this.#prepare();
    // Named by its content: writing it again writes the same bytes.
    const key = BLOB_PREFIX + parseBlobRef(ref)!.path;
    await putObject(s3, { bucket: this.#options.bucket, key, expectedOwner }, {
      bytes,
      contentType,
    });
    return ref;
  }

  async get(ref: string): Promise<StoredBlob | undefined> {
    const parsed = parseBlobRef(ref);
    if (!parsed) return undefined;
    const [s3, { getObject }, expectedOwner] = await this.#prepare();
    // The worker may list the prefix (template.yaml), so a missing key is a 404, not a 403.
    const bytes = await getObject(s3, {
      bucket: this.#options.bucket,
      key: BLOB_PREFIX + parsed.path,
      expectedOwner,
    });
    return bytes && { bytes, contentType: parsed.contentType };
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
