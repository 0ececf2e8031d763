/**
 * Large payloads kept outside the records that mention them: the base64
 * images of a request, and a long chat a client re-sends. A job record, a
 * queue message and a stored conversation then hold a short reference
 * (`gateway-blob:<owner>/<sha-256>.<type>`), never megabytes of base64, and
 * stay within DynamoDB's 400 KB items and Deno KV's 64 KiB values. Blobs are
 * named by their content, so an image re-sent every turn is kept once.
 */

/** What a blob holds. */
export interface StoredBlob {
  bytes: Uint8Array;
  contentType: string;
}

/** How a blob is kept. */
export interface BlobPutOptions {
  /**
   * Kept for a day, not `BLOB_TTL_DAYS`: the blobs of a stateless request,
   * needed only until its job ends. The same blob put without it is kept
   * `BLOB_TTL_DAYS` as ever: a short-lived put never shortens a blob's life.
   */
  shortLived?: boolean;
}

/** Where blobs live: S3 on AWS, files under `DATA_DIR` with the embedded backend. */
export interface BlobStore {
  /** Keeps `bytes` for `owner` (a key's owner id, or none) and returns the reference that finds them. */
  put(
    owner: string | undefined,
    bytes: Uint8Array,
    contentType: string,
    options?: BlobPutOptions,
  ): Promise<string>;
  /** The blob a reference names; undefined when it is gone (blobs expire after `BLOB_TTL_DAYS`). */
  get(ref: string): Promise<StoredBlob | undefined>;
  /**
   * Keeps several blobs of one owner, all or none, and returns their
   * references in order. A store that bounds the bytes one owner's blobs may
   * take (`BLOB_KEY_MAX_BYTES`) counts them as it keeps them, and refuses the
   * lot with a {@linkcode BlobQuotaError} when the new ones would pass it; a
   * blob it holds already costs nothing. A store without this method keeps
   * each blob with `put`, unbounded.
   */
  putAll?(
    owner: string | undefined,
    blobs: readonly StoredBlob[],
    options?: BlobPutOptions,
  ): Promise<string[]>;
}

/** Thrown when blobs would take their owner over the bytes it may hold: nothing was kept. */
export class BlobQuotaError extends Error {
  constructor(
    /** Bytes the owner's blobs take now. */
    readonly held: number,
    /** Bytes the refused blobs would have added. */
    readonly adding: number,
    /** The most the owner may hold. */
    readonly limit: number,
  ) {
    super(
      `Cannot keep blobs: their owner holds ${held} bytes, and ${adding} more would pass its limit of ${limit}`,
    );
    this.name = "BlobQuotaError";
  }
}

/** How a blob reference begins. */
export const BLOB_SCHEME = "gateway-blob:";

/** The types a blob may have, by the extension its reference ends with. */
const TYPES: Record<string, string> = {
  png: "image/png",
  jpeg: "image/jpeg",
  webp: "image/webp",
  gif: "image/gif",
  json: "application/json",
  bin: "application/octet-stream",
};

/** Whether a URL is a blob reference. */
export function isBlobRef(url: string): boolean {
  return url.startsWith(BLOB_SCHEME);
}

/** A blob's reference: who owns it, its content's SHA-256 and its type. */
export async function blobRef(
  owner: string | undefined,
  bytes: Uint8Array,
  contentType: string,
): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes.slice()));
  const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  const extension = Object.entries(TYPES).find(([, type]) => type === contentType)?.[0] ?? "bin";
  return `${BLOB_SCHEME}${owner ?? "_"}/${hex}.${extension}`;
}

/**
 * The path a reference names inside a store (`<owner>/<sha-256>.<type>`) and
 * its type; undefined for anything that is not a well-formed reference, so a
 * client cannot name a path of its choosing.
 */
export function parseBlobRef(ref: string): { path: string; contentType: string } | undefined {
  const match = /^gateway-blob:([0-9a-f]{16}|_)\/([0-9a-f]{64})\.([a-z]+)$/.exec(ref);
  if (!match || !(match[3] in TYPES)) return undefined;
  return { path: `${match[1]}/${match[2]}.${match[3]}`, contentType: TYPES[match[3]] };
}

/** The bytes and type of a base64 data: URL, or undefined when it is not one. */
export function decodeDataUrl(url: string): StoredBlob | undefined {
  const match = /^\s*data:([^;,]*)(?:;[^,]*)?;base64,/i.exec(url);
  if (!match) return undefined;
  const binary = atob(url.slice(match[0].length).trim());
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return { bytes, contentType: match[1].toLowerCase() || "application/octet-stream" };
}

/** A blob as a data: URL, as a vision backend takes an image. */
export function dataUrlOf(blob: StoredBlob): string {
  let binary = "";
  for (let i = 0; i < blob.bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...blob.bytes.subarray(i, i + 0x8000));
  }
  return `data:${blob.contentType};base64,${btoa(binary)}`;
}
