/** API Gateway HTTP API events (payload format 2.0), as Lambda hands them to `handler`. */

/** Options for {@linkcode httpApiEvent}. */
export interface HttpApiEventOptions {
  query?: string;
  /** Sent as JSON. */
  body?: unknown;
  /** Sent as `Authorization: Bearer <key>` when given. */
  apiKey?: string;
  /** The domain the request came to; default an API Gateway one (a function URL's looks like `<id>.lambda-url.<region>.on.aws`). */
  host?: string;
}

/** An event for one request, with a fresh request id. */
export function httpApiEvent(method: string, path: string, options: HttpApiEventOptions = {}) {
  const host = options.host ?? "gw1234.execute-api.us-east-1.amazonaws.com";
  const now = Date.now();
  return {
    version: "2.0",
    routeKey: "$default",
    rawPath: path,
    rawQueryString: options.query ?? "",
    headers: {
      host,
      "content-type": "application/json",
      ...(options.apiKey === undefined ? {} : { authorization: `Bearer ${options.apiKey}` }),
    },
    requestContext: {
      accountId: "111122223333",
      apiId: "gw1234",
      domainName: host,
      domainPrefix: "gw1234",
      http: { method, path, protocol: "HTTP/1.1", sourceIp: "127.0.0.1", userAgent: "lambda-test" },
      requestId: crypto.randomUUID(),
      routeKey: "$default",
      stage: "$default",
      time: new Date(now).toUTCString(),
      timeEpoch: now,
    },
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    isBase64Encoded: false,
  };
}
