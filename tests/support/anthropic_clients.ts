/**
 * What the Anthropic Messages API tests share: the gateway on a loopback
 * port, the real `@anthropic-ai/sdk` pointed at it, and in-process POSTs.
 */
// @ts-types="./anthropic_sdk.d.ts"
import Anthropic from "@anthropic-ai/sdk";
import type { TestGateway } from "./gateway.ts";

/** The API key the tests configure. */
export const KEY = "sk-test-key-one";

/** Serves the gateway's app on a free loopback port. */
export function serve(gateway: TestGateway): { base: string; stop: () => Promise<void> } {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    gateway.app.fetch,
  );
  return { base: `http://127.0.0.1:${server.addr.port}`, stop: () => server.shutdown() };
}

/** The SDK, pointed at a served gateway, without retries. */
export function anthropicClient(base: string, apiKey = KEY): Anthropic {
  return new Anthropic({ baseURL: base, apiKey, maxRetries: 0, timeout: 60_000 });
}

/** POSTs a JSON body (or a raw string) to the gateway in-process. */
export function post(
  gateway: TestGateway,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return Promise.resolve(gateway.app.request(path, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  }));
}
