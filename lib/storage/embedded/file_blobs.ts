/** Blobs as files under `DATA_DIR/blobs`, for the embedded backend. */
import { blobRef, type BlobStore, parseBlobRef, type StoredBlob } from "../../core/blobs.ts";

/** A {@linkcode BlobStore} in a directory; a blob is written once, whole, under its content's name. */
export class FileBlobStore implements BlobStore {
  #dir: string;

  constructor(dir: string) {
    this.#dir = dir;
  }

  async put(owner: string | undefined, bytes: Uint8Array, contentType: string): Promise<string> {
    const ref = await blobRef(owner, bytes, contentType);
    const { path } = parseBlobRef(ref)!;
    const file = `${this.#dir}/${path}`;
    if (await exists(file)) return ref;
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
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}
