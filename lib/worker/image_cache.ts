/**
 * Images the worker has fetched and inlined, kept in memory for a while, so
 * an image earlier in a conversation is not fetched again on every turn. The
 * cache is bounded by the size of what it holds, least recently used out
 * first, and entries expire.
 */

/** What the worker keeps: up to 64 MiB of data: URLs, each for an hour. */
export const WORKER_IMAGE_CACHE: ImageCacheOptions = { maxChars: 64 * 2 ** 20, ttlMs: 60 * 60_000 };

/** Options for {@linkcode ImageCache}. */
export interface ImageCacheOptions {
  /** Most characters of data: URLs held at once. */
  maxChars: number;
  /** How long an entry is used after it was fetched. */
  ttlMs: number;
  /** The clock; tests pass their own. */
  now?: () => number;
}

/** One inlined image. */
export interface CachedImage {
  dataUrl: string;
  /** The image's size in bytes, decoded. */
  bytes: number;
}

/** A bounded, expiring map from a key (owner and URL) to an inlined image. */
export class ImageCache {
  #entries = new Map<string, CachedImage & { fetchedAt: number }>();
  #chars = 0;
  #options: ImageCacheOptions;

  constructor(options: ImageCacheOptions) {
    this.#options = options;
  }

  /** The image under this key, if it is there and fresh; it becomes the most recently used. */
  get(key: string): CachedImage | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    this.#entries.delete(key);
    if (this.#now() - entry.fetchedAt > this.#options.ttlMs) {
      this.#chars -= entry.dataUrl.length;
      return undefined;
    }
    this.#entries.set(key, entry);
    return { dataUrl: entry.dataUrl, bytes: entry.bytes };
  }

  /** Keeps an image, dropping the least recently used ones to make room; one too big is not kept. */
  set(key: string, image: CachedImage): void {
    const old = this.#entries.get(key);
    if (old) {
      this.#entries.delete(key);
      this.#chars -= old.dataUrl.length;
    }
    if (image.dataUrl.length > this.#options.maxChars) return;
    for (const [oldest, entry] of this.#entries) {
      if (this.#chars + image.dataUrl.length <= this.#options.maxChars) break;
      this.#entries.delete(oldest);
      this.#chars -= entry.dataUrl.length;
    }
    this.#entries.set(key, { ...image, fetchedAt: this.#now() });
    this.#chars += image.dataUrl.length;
  }

  /** Characters of data: URLs held now. */
  get size(): number {
    return this.#chars;
  }

  #now(): number {
    return this.#options.now?.() ?? Date.now();
  }
}
