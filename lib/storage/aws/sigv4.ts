/**
 * AWS Signature Version 4 for requests sent with `fetch`, on Web Crypto only
 * (`crypto.subtle`, `TextEncoder`), so the same code runs in Deno and in the
 * Lambda bundle's Node.js without the SDK's signer or `node:crypto`.
 */

/** The credentials a request is signed with. */
export interface SigningCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** What one request is, before it is signed. */
export interface SignableRequest {
  method: string;
  /** The query string, if any, is in `url.search` (`+` there means a space, as `URLSearchParams` writes it). */
  url: URL;
  /** Lower-case names. */
  headers: Record<string, string>;
  /** A string is sent as UTF-8. */
  body?: Uint8Array | string;
}

/** Who signs, for which service and region. */
export interface SigningScope {
  /** "dynamodb", "sqs", "s3". */
  service: string;
  region: string;
  credentials: SigningCredentials;
  /** S3's rules: the path is signed as given (encoded once, not normalised), and the payload's hex SHA-256 is sent in `x-amz-content-sha256` (kept if the caller set it, e.g. UNSIGNED-PAYLOAD). */
  s3?: boolean;
  /** For tests; defaults to now. */
  signingDate?: Date;
}

const ALGORITHM = "AWS4-HMAC-SHA256";
const PAYLOAD_HASH_HEADER = "x-amz-content-sha256";
const utf8 = new TextEncoder();
const HEX = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, "0"));

/**
 * Signs a request and returns the headers to send: the request's own (names
 * lower-cased) plus `host`, `x-amz-date`, `x-amz-security-token` (with a
 * session token), `x-amz-content-sha256` (S3) and `authorization`. Every
 * header is signed. `fetch` sets `host` itself, to the value signed here.
 */
export async function signRequest(
  request: SignableRequest,
  scope: SigningScope,
): Promise<Record<string, string>> {
  const { credentials, region, service } = scope;
  if (!credentials?.accessKeyId || !credentials.secretAccessKey) {
    throw new TypeError("Cannot sign request: the credentials lack an access key id or secret");
  }
  if (!region || !service) {
    throw new TypeError("Cannot sign request: the region and the service must be named");
  }
  const longDate = amzDate(scope.signingDate ?? new Date());
  const shortDate = longDate.slice(0, 8);

  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.headers)) headers[name.toLowerCase()] = value;
  delete headers.authorization; // a request signed before is signed afresh
  headers.host = request.url.host; // WHATWG URLs leave out the scheme's default port
  headers["x-amz-date"] = longDate;
  if (credentials.sessionToken) headers["x-amz-security-token"] = credentials.sessionToken;
  const payloadHash = headers[PAYLOAD_HASH_HEADER] ?? await hexSha256(request.body ?? "");
  if (scope.s3) headers[PAYLOAD_HASH_HEADER] = payloadHash;

  const names = Object.keys(headers).sort();
  const signedHeaders = names.join(";");
  const canonicalRequest = [
    request.method.toUpperCase(),
    scope.s3 ? request.url.pathname : canonicalPath(request.url.pathname),
    canonicalQuery(request.url.searchParams),
    names.map((name) => `${name}:${canonicalValue(headers[name])}\n`).join(""),
    signedHeaders,
    payloadHash,
  ].join("\n");
  const credentialScope = `${shortDate}/${region}/${service}/aws4_request`;
  const stringToSign = [ALGORITHM, longDate, credentialScope, await hexSha256(canonicalRequest)]
    .join("\n");
  const key = await signingKey(credentials.secretAccessKey, shortDate, region, service);
  const signature = hex(await crypto.subtle.sign("HMAC", key, utf8.encode(stringToSign)));

  headers.authorization =
    `${ALGORITHM} Credential=${credentials.accessKeyId}/${credentialScope}, ` +
    `SignedHeaders=${signedHeaders}, Signature=${signature}`;
  return headers;
}

/** `20150830T123600Z`, in UTC. */
function amzDate(date: Date): string {
  return date.toISOString().replace(/[-:]|\.\d{3}/g, "");
}

/**
 * The path as SigV4 signs it for services other than S3: empty, `.` and `..`
 * segments resolved, then each segment of the (already once-encoded) URL path
 * encoded again.
 */
function canonicalPath(pathname: string): string {
  const segments: string[] = [];
  for (const segment of pathname.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") segments.pop();
    else segments.push(uriEncode(segment));
  }
  const trailing = segments.length > 0 && pathname.endsWith("/") ? "/" : "";
  return `/${segments.join("/")}${trailing}`;
}

/** The query's pairs, each side RFC 3986-encoded, sorted by name and then by value. */
function canonicalQuery(params: URLSearchParams): string {
  const pairs = [...params].map(([name, value]) => [uriEncode(name), uriEncode(value)]);
  pairs.sort(([a, x], [b, y]) => a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0);
  return pairs.map(([name, value]) => `${name}=${value}`).join("&");
}

/** RFC 3986 percent-encoding: everything but letters, digits and `-._~`. */
function uriEncode(text: string): string {
  return encodeURIComponent(text).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/** A header value as signed: line breaks and runs of spaces become one space, ends trimmed. */
function canonicalValue(value: string): string {
  return value.replace(/[\r\n]/g, " ").replace(/[ \t]+/g, " ").trim();
}

/** Derived keys kept, at most; one per secret, day, region and service in use. */
const SIGNING_KEY_LIMIT = 32;
const signingKeys = new Map<string, Promise<CryptoKey>>();

/** The day's signing key, derived once and then reused (four HMACs saved a call). */
function signingKey(
  secret: string,
  shortDate: string,
  region: string,
  service: string,
): Promise<CryptoKey> {
  const id = `${shortDate}\n${region}\n${service}\n${secret}`;
  let key = signingKeys.get(id);
  if (key) return key;
  if (signingKeys.size >= SIGNING_KEY_LIMIT) {
    signingKeys.delete(signingKeys.keys().next().value!); // the oldest
  }
  key = deriveSigningKey(secret, [shortDate, region, service, "aws4_request"]);
  signingKeys.set(id, key);
  key.catch(() => {
    if (signingKeys.get(id) === key) signingKeys.delete(id);
  });
  return key;
}

/** HMAC("AWS4" + secret, date), then region, service and "aws4_request" in turn. */
async function deriveSigningKey(secret: string, steps: string[]): Promise<CryptoKey> {
  let key: Uint8Array<ArrayBuffer> = utf8.encode(`AWS4${secret}`);
  for (const step of steps) key = new Uint8Array(await hmac(key, step));
  return importHmacKey(key);
}

function importHmacKey(raw: Uint8Array<ArrayBuffer>): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
}

async function hmac(raw: Uint8Array<ArrayBuffer>, data: string): Promise<ArrayBuffer> {
  return crypto.subtle.sign("HMAC", await importHmacKey(raw), utf8.encode(data));
}

async function hexSha256(data: Uint8Array | string): Promise<string> {
  const bytes = typeof data === "string" ? utf8.encode(data) : data as Uint8Array<ArrayBuffer>;
  return hex(await crypto.subtle.digest("SHA-256", bytes));
}

function hex(buffer: ArrayBuffer): string {
  let text = "";
  for (const byte of new Uint8Array(buffer)) text += HEX[byte];
  return text;
}
