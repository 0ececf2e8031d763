/**
 * The part of the S3 client the gateway runs: the client itself, and the
 * three calls the blob bucket makes. clients.ts and s3_blobs.ts import this module
 * when the first blob is kept or read, so a process that never touches a
 * blob (most workers, most of the time) never loads the S3 client, about
 * 4 MiB of a worker's memory.
 */
import {
  GetObjectCommand,
  HeadObjectCommand,
  NoSuchKey,
  NotFound,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";

export { S3Client };

/** Where an object is, and who must own its bucket (undefined: anyone). */
export interface ObjectRef {
  bucket: string;
  key: string;
  expectedOwner?: string;
}

/** Writes `bytes` as the object. */
export async function putObject(
  s3: S3Client,
  ref: ObjectRef,
  body: { bytes: Uint8Array; contentType: string },
): Promise<void> {
  await s3.send(
    new PutObjectCommand({
      Bucket: ref.bucket,
      Key: ref.key,
      Body: body.bytes,
      ContentType: body.contentType,
      ExpectedBucketOwner: ref.expectedOwner,
    }),
  );
}

/** The object's bytes, or undefined when there is no such key. */
export async function getObject(s3: S3Client, ref: ObjectRef): Promise<Uint8Array | undefined> {
  try {
    const out = await s3.send(
      new GetObjectCommand({
        Bucket: ref.bucket,
        Key: ref.key,
        ExpectedBucketOwner: ref.expectedOwner,
      }),
    );
    return await out.Body!.transformToByteArray();
  } catch (err) {
    if (err instanceof NoSuchKey) return undefined;
    throw err;
  }
}

/** Whether the object exists. */
export async function hasObject(s3: S3Client, ref: ObjectRef): Promise<boolean> {
  try {
    await s3.send(
      new HeadObjectCommand({
        Bucket: ref.bucket,
        Key: ref.key,
        ExpectedBucketOwner: ref.expectedOwner,
      }),
    );
    return true;
  } catch (err) {
    if (err instanceof NotFound || err instanceof NoSuchKey) return false;
    throw err;
  }
}
