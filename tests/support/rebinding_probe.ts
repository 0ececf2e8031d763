/**
 * A DNS rebinding attack on the worker's outbound requests, run in a child
 * process (tests/outbound_pinning_test.ts) that may reach 127.0.0.1 and the
 * name `localhost` but no public address:
 *
 *   deno run --allow-net=127.0.0.1,localhost tests/support/rebinding_probe.ts
 *
 * An "internal" server listens on 127.0.0.1. The DNS stand-in answers
 * `localhost` with a public address the first time it is asked, and with
 * 127.0.0.1 after that, as an attacker's name server would. The system's own
 * resolver also says 127.0.0.1 for `localhost`, so a client that resolves the
 * name again after the check (as `fetch` does) reaches the internal server.
 * Prints one JSON object: what the worker's functions said, what the stand-in
 * was asked, and what the internal server received.
 */
import { userMessage } from "../../lib/core/messages.ts";
import { deliverCallback } from "../../lib/worker/callbacks.ts";
import { inlineImages } from "../../lib/worker/images.ts";
import { PNG } from "./image_server.ts";

/** The public address the stand-in gives first; TEST-NET-3, reached by nobody. */
export const PUBLIC_ADDRESS = "203.0.113.7";

/** What the probe prints. */
export interface ProbeReport {
  image: { inlined: boolean; error?: string };
  callback: { delivered: boolean; error?: string };
  /** Names the DNS stand-in was asked, in order. */
  asked: string[];
  /** Requests the internal server received: "METHOD /path". */
  internal: string[];
}

/** A resolver whose first answer for a name is public and every later one loopback. */
function rebindingResolver(asked: string[]) {
  const seen = new Set<string>();
  return (hostname: string): Promise<string[]> => {
    asked.push(hostname);
    const first = !seen.has(hostname);
    seen.add(hostname);
    return Promise.resolve(first ? [PUBLIC_ADDRESS] : ["127.0.0.1"]);
  };
}

if (import.meta.main) {
  const internal: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    internal.push(`${req.method} ${new URL(req.url).pathname}`);
    return new Response(PNG.slice(), { headers: { "content-type": "image/png" } });
  });
  const port = server.addr.port;
  const asked: string[] = [];
  const report: ProbeReport = {
    image: { inlined: false },
    callback: { delivered: false },
    asked,
    internal,
  };
  try {
    await inlineImages([userMessage("What is this?", [`http://localhost:${port}/secret.png`])], {
      maxBytes: 64 * 1024,
      timeoutMs: 5000,
      allowedHosts: [],
      resolve: rebindingResolver(asked),
    });
    report.image.inlined = true;
  } catch (err) {
    report.image.error = err instanceof Error ? err.message : String(err);
  }
  const result = await deliverCallback(`http://localhost:${port}/hook`, { job_id: "j" }, {
    attempts: 1,
    timeoutMs: 5000,
    backoffMs: 0,
    allowedHosts: [],
    resolve: rebindingResolver(asked),
  });
  report.callback = result.delivered
    ? { delivered: true }
    : { delivered: false, error: result.error };
  await server.shutdown();
  console.log(JSON.stringify(report));
}
