/**
 * S3 object reads and writes as signed `fetch` calls. The gateway only puts
 * and gets whole objects in one bucket, and the full S3 client would add a
 * sixth to the Lambda bundle for that (deploy/COST.md, the bench's bundle
 * figure). Requests are signed by `sigv4.ts` with S3's rules, with the same
 * credentials and region as the other clients.
 */
import { pauseBeforeAttempt } from "./json_protocol.ts";
import { type SigningCredentials, signRequest } from "./sigv4.ts";

/** Something resolved later, as the SDK's clients hold their region and credentials. */
type Provider<T> = () => Promise<T>;

/** Where the bucket is and who signs for it. */
export interface S3ObjectsOptions {
  bucket: string;
  region: string | Provider<string>;
  credentials: SigningCredentials | Provider<SigningCredentials>;
  /** An emulator's address (`AWS_ENDPOINT_URL_S3`); objects are then addressed path-style. */
  endpoint?: string;
  /** How long one attempt may take, in milliseconds. */
  timeoutMs?: number;
  /** Attempts per call when S3 answers 5xx or 429, or the network fails. */
  maxAttempts?: number;
  /**
   * The account that must own the bucket (sent as `x-amz-expected-bucket-owner`,
   * so S3 refuses a bucket of the same name that someone else owns: bucket
   * names are global). Asked once; undefined sends no such header.
   */
  expectedBucketOwner?: () => Promise<string | undefined>;
}

/** An object as read back. */
export interface S3Object {
  bytes: Uint8Array;
  contentType: string | null;
}

/** A refusal from S3, with its status and error code (never the request's headers). */
export class S3RequestError extends Error {
  constructor(readonly status: number, readonly code: string, operation: string) {
    super(`S3 ${operation} failed: ${status} ${code}`);
    this.name = "S3RequestError";
  }
}

/** A key's path as S3 signs it: each segment percent-encoded once, slashes kept. */
export function encodeKey(key: string): string {
  return key.split("/").map((segment) =>
    encodeURIComponent(segment).replace(
      /[!'()*]/g,
      (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
    )
  ).join("/");
}

/** What one request to S3 is, before it is signed. */
export interface S3Request {
  method: "GET" | "PUT";
  url: URL;
  headers: Record<string, string>;
  body?: Uint8Array;
}

/**
 * Signs a request as S3 wants it (Signature Version 4, the payload's hash in
 * `x-amz-content-sha256`, the path encoded once) and returns the headers to
 * send; `signingDate` is for tests that check the documented examples.
 */
export async function signS3Request(
  request: S3Request,
  signer: { region: S3ObjectsOptions["region"]; credentials: S3ObjectsOptions["credentials"] },
  signingDate?: Date,
): Promise<Record<string, string>> {
  const [region, credentials] = await Promise.all([
    resolve(signer.region),
    resolve(signer.credentials),
  ]);
  return signRequest(request, { service: "s3", region, credentials, s3: true, signingDate });
}

/** A value given as is or by a provider. */
function resolve<T>(value: T | Provider<T>): Promise<T> {
  return typeof value === "function" ? (value as Provider<T>)() : Promise.resolve(value);
}

/** Whole-object puts and gets in one bucket. */
export class S3Objects {
  #options: S3ObjectsOptions;
  #owner: Promise<string | undefined> | undefined;

  constructor(options: S3ObjectsOptions) {
    this.#options = options;
  }

  /** The header that names the bucket's expected owner, once known. */
  async #ownerHeader(): Promise<Record<string, string>> {
    if (!this.#options.expectedBucketOwner) return {};
    this.#owner ??= this.#options.expectedBucketOwner();
    const owner = await this.#owner.catch((err) => {
      this.#owner = undefined; // asked again next time
      throw err;
    });
    return owner ? { "x-amz-expected-bucket-owner": owner } : {};
  }

  /** Writes `bytes` under `key`. */
  async put(key: string, bytes: Uint8Array, contentType: string): Promise<void> {
    const response = await this.#send("PutObject", {
      method: "PUT",
      url: await this.#url(key),
      headers: { "content-type": contentType, ...await this.#ownerHeader() },
      body: bytes,
    });
    await response.body?.cancel();
  }

  /** The object under `key`, or undefined when there is none. */
  async get(key: string): Promise<S3Object | undefined> {
    const response = await this.#send("GetObject", {
      method: "GET",
      url: await this.#url(key),
      headers: await this.#ownerHeader(),
    }, [404]);
    if (response.status === 404) {
      await response.body?.cancel();
      return undefined;
    }
    return {
      bytes: new Uint8Array(await response.arrayBuffer()),
      contentType: response.headers.get("content-type"),
    };
  }

  /** Path-style at an emulator (or for a bucket with dots), virtual-hosted on AWS. */
  async #url(key: string): Promise<URL> {
    const { bucket, endpoint } = this.#options;
    const path = encodeKey(key);
    if (endpoint) {
      return new URL(`${endpoint.replace(/\/+$/, "")}/${encodeURIComponent(bucket)}/${path}`);
    }
    const region = await resolve(this.#options.region);
    return bucket.includes(".")
      ? new URL(`https://s3.${region}.amazonaws.com/${bucket}/${path}`)
      : new URL(`https://${bucket}.s3.${region}.amazonaws.com/${path}`);
  }

  /** Sends a signed request, again after a 5xx, a 429 or a network error. */
  async #send(operation: string, request: S3Request, expected: number[] = []): Promise<Response> {
    const attempts = this.#options.maxAttempts ?? 3;
    for (let attempt = 1;; attempt++) {
      let response: Response;
      try {
        // fetch sets `host` itself, to the value that was signed.
        const { host: _host, ...headers } = await signS3Request(request, this.#options);
        response = await fetch(request.url, {
          method: request.method,
          headers,
          body: request.body as Uint8Array<ArrayBuffer> | undefined,
          signal: AbortSignal.timeout(this.#options.timeoutMs ?? 35_000),
        });
      } catch (err) {
        if (attempt >= attempts) throw err;
        await pauseBeforeAttempt(attempt + 1);
        continue;
      }
      if (response.ok || expected.includes(response.status)) return response;
      const code = errorCode(await response.text());
      const retryable = response.status >= 500 || response.status === 429;
      if (!retryable || attempt >= attempts) {
        throw new S3RequestError(response.status, code, operation);
      }
      await pauseBeforeAttempt(attempt + 1, code === "SlowDown");
    }
  }
}

/** S3's error code from its XML answer (`<Code>NoSuchBucket</Code>`). */
function errorCode(xml: string): string {
  return /<Code>([A-Za-z0-9.]{1,64})<\/Code>/.exec(xml)?.[1] ?? "UnknownError";
}
