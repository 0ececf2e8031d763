/**
 * HTTPS through the worker's pinned client, run in a child process
 * (tests/outbound_pinning_test.ts) that trusts the test CA in tests/support/tls
 * through NODE_EXTRA_CA_CERTS:
 *
 *   NODE_EXTRA_CA_CERTS=tests/support/tls/ca.pem \
 *     deno run --allow-net=127.0.0.1 --allow-read --allow-env --allow-sys tests/support/tls_probe.ts
 *
 * A TLS server on 127.0.0.1 holds a certificate for `pinned.example.test`
 * only. The client connects to 127.0.0.1 for a URL naming that host, and for
 * one naming another host. Prints one JSON object: what each request gave.
 */
import { requestPinned } from "../../lib/outbound/guarded_client.ts";

/** What the probe prints, per host name asked for. */
export type TlsProbeReport = Record<string, { status?: number; body?: string; error?: string }>;

if (import.meta.main) {
  const dir = new URL("./tls/", import.meta.url);
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    cert: await Deno.readTextFile(new URL("cert.pem", dir)),
    key: await Deno.readTextFile(new URL("key.pem", dir)),
    onListen: () => {},
  }, (req) => new Response(`host=${req.headers.get("host")}`));
  const report: TlsProbeReport = {};
  for (const name of ["pinned.example.test", "other.example.test"]) {
    try {
      const url = new URL(`https://${name}:${server.addr.port}/a.png`);
      const res = await requestPinned({ url, addresses: ["127.0.0.1"] }, {
        method: "GET",
        signal: AbortSignal.timeout(5000),
      });
      report[name] = { status: res.status, body: await res.text() };
    } catch (err) {
      report[name] = { error: err instanceof Error ? err.message : String(err) };
    }
  }
  await server.shutdown();
  console.log(JSON.stringify(report));
}
