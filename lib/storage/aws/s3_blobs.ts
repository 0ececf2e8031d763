/** Blobs in an S3 bucket, under `blobs/`, expired by the bucket's lifecycle rule. */
import { GetObjectCommand, NoSuchKey, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
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
  #s3: S3Client;
  #options: S3BlobOptions;
  #owner: Promise<string | undefined> | undefined;

  constructor(s3: S3Client, options: S3BlobOptions) {
    this.#s3 = s3;
    this.#options = options;
  }

  async put(owner: string | undefined, bytes: Uint8Array, contentType: string): Promise<string> {
    const ref = await blobRef(owner, bytes, contentType);
    // Named by its content: writing it again writes the same bytes.
    await this.#s3.send(
      new PutObjectCommand({
        Bucket: this.#options.bucket,
        Key: BLOB_PREFIX + parseBlobRef(ref)!.path,
        Body: bytes,
        ContentType: contentType,
        ExpectedBucketOwner: await this.#expectedOwner(),
      }),
    );
    return ref;
  }

  async get(ref: string): Promise<StoredBlob | undefined> {
    const parsed = parseBlobRef(ref);
    if (!parsed) return undefined;
    try {
      const out = await this.#s3.send(
        new GetObjectCommand({
          Bucket: this.#options.bucket,
          Key: BLOB_PREFIX + parsed.path,
          ExpectedBucketOwner: await this.#expectedOwner(),
        }),
      );
      const bytes = await out.Body!.transformToByteArray();
      return { bytes, contentType: parsed.contentType };
    } catch (err) {
      // The worker may list the prefix (template.yaml), so a missing key is a 404, not a 403.
      if (err instanceof NoSuchKey) return undefined;
      throw err;
    }
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
