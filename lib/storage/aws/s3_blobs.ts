/** Blobs in an S3 bucket, under `blobs/`, expired by the bucket's lifecycle rule. */
import { GetObjectCommand, NoSuchKey, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { blobRef, type BlobStore, parseBlobRef, type StoredBlob } from "../../core/blobs.ts";

/** The key prefix of every blob; the lifecycle rule and the IAM policies name it. */
export const BLOB_PREFIX = "blobs/";

/** A {@linkcode BlobStore} on S3. */
export class S3BlobStore implements BlobStore {
  #s3: S3Client;
  #bucket: string;

  constructor(s3: S3Client, bucket: string) {
    this.#s3 = s3;
    this.#bucket = bucket;
  }

  async put(owner: string | undefined, bytes: Uint8Array, contentType: string): Promise<string> {
    const ref = await blobRef(owner, bytes, contentType);
    // Named by its content: writing it again writes the same bytes.
    await this.#s3.send(
      new PutObjectCommand({
        Bucket: this.#bucket,
        Key: BLOB_PREFIX + parseBlobRef(ref)!.path,
        Body: bytes,
        ContentType: contentType,
      }),
    );
    return ref;
  }

  async get(ref: string): Promise<StoredBlob | undefined> {
    const parsed = parseBlobRef(ref);
    if (!parsed) return undefined;
    try {
      const out = await this.#s3.send(
        new GetObjectCommand({ Bucket: this.#bucket, Key: BLOB_PREFIX + parsed.path }),
      );
      return { bytes: await out.Body!.transformToByteArray(), contentType: parsed.contentType };
    } catch (err) {
      // The worker may list the prefix (template.yaml), so a missing key is a 404, not a 403.
      if (err instanceof NoSuchKey) return undefined;
      throw err;
    }
  }
}
