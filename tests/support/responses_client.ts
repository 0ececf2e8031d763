/**
 * The `openai` SDK pointed at a test gateway served on a loopback port, for
 * the Responses API's tests.
 */
import OpenAI from "openai";
import type { TestGateway } from "./gateway.ts";
import { messageText } from "../../lib/core/messages.ts";

/** The two keys a test gateway takes when a test gives it `KEYS`. */
export const KEY = "sk-test-key-one";
export const OTHER_KEY = "sk-test-key-two";
export const KEYS = { GATEWAY_API_KEYS: `${KEY},${OTHER_KEY}` };

/** Serves the gateway's app on a free loopback port. */
export function serve(gateway: TestGateway): { base: string; stop: () => Promise<void> } {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    gateway.app.fetch,
  );
  return { base: `http://127.0.0.1:${server.addr.port}`, stop: () => server.shutdown() };
}

/** An SDK client of the gateway at `base`, which never retries. */
export function client(base: string, apiKey = KEY): OpenAI {
  return new OpenAI({ baseURL: `${base}/v1`, apiKey, maxRetries: 0, timeout: 60_000 });
}

/** What the vLLM stand-in was last sent, as role and text. */
export function lastChat(gateway: TestGateway): string[] {
  return gateway.vllm.requests.at(-1)!.messages.map((m) => `${m.role}: ${messageText(m)}`);
}
