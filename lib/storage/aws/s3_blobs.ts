/** Blobs in an S3 bucket, under `blobs/`, expired by the bucket's lifecycle rule. */
import type { S3Objects } from "./s3_objects.ts";
import { blobRef, type BlobStore, parseBlobRef, type StoredBlob } from "../../core/blobs.ts";

/** The key prefix of every blob; the lifecycle rule and the IAM policies name it. */
export const BLOB_PREFIX = "blobs/";

/** A {@linkcode BlobStore} on S3. */
export class S3BlobStore implements BlobStore {
  #objects: S3Objects;

  constructor(objects: S3Objects) {
    this.#objects = objects;
  }

  async put(owner: string | undefined, bytes: Uint8Array, contentType: string): Promise<string> {
    const ref = await blobRef(owner, bytes, contentType);
    // Named by its content: writing it again writes the same bytes.
    await this.#objects.put(BLOB_PREFIX + parseBlobRef(ref)!.path, bytes, contentType);
    return ref;
  }

  async get(ref: string): Promise<StoredBlob | undefined> {
    const parsed = parseBlobRef(ref);
    if (!parsed) return undefined;
    // The worker may list the prefix (template.yaml), so a missing key is a 404, not a 403.
    const object = await this.#objects.get(BLOB_PREFIX + parsed.path);
    return object && { bytes: object.bytes, contentType: parsed.contentType };
  }
}
