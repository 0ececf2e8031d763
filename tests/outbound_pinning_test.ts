/**
 * Outbound requests for a client's URL go to the address the check approved:
 * DNS rebinding (a name that answers a public address to the check and
 * 127.0.0.1 to the connection) reaches nothing inside the user's network.
 */
import assert from "node:assert/strict";
import { requestPinned } from "../lib/outbound/guarded_client.ts";
import { PROJECT_DIR } from "./support/child_deno.ts";
import { type ProbeReport, PUBLIC_ADDRESS } from "./support/rebinding_probe.ts";
import type { TlsProbeReport } from "./support/tls_probe.ts";

/** Runs a probe script in a child `deno run` and returns the JSON it printed. */
async function runProbe<T>(script: string, flags: string[], env: Record<string, string> = {}) {
  const output = await new Deno.Command("deno", {
    args: ["run", ...flags, script],
    cwd: PROJECT_DIR,
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout);
  assert.ok(output.success, text + new TextDecoder().decode(output.stderr));
  return JSON.parse(text) as T;
}

Deno.test("inlineImages() and deliverCallback() connect to the address they checked, so DNS rebinding reaches no loopback server", async () => {
  // A child process, so that the name `localhost` may be connected to at all:
  // a client that resolves again (as `fetch` does) then reaches the internal server.
  const report = await runProbe<ProbeReport>("tests/support/rebinding_probe.ts", [
    "--allow-net=127.0.0.1,localhost",
  ]);

  assert.deepEqual(report.internal, [], "the loopback server received nothing");
  assert.deepEqual(report.asked, ["localhost", "localhost"], "one lookup per request");
  assert.equal(report.image.inlined, false);
  // The connection went to the checked public address, which this process may not reach.
  const checkedAddress = new RegExp(`cannot fetch: .*${PUBLIC_ADDRESS.replaceAll(".", "\\.")}`);
  assert.match(report.image.error ?? "", checkedAddress);
  assert.equal(report.callback.delivered, false);
  assert.match(report.callback.error ?? "", new RegExp(PUBLIC_ADDRESS.replaceAll(".", "\\.")));
});

Deno.test("requestPinned() connects to the checked address and keeps the name as the Host header", async () => {
  const seen: { host: string | null; path: string }[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    seen.push({ host: req.headers.get("host"), path: new URL(req.url).pathname });
    return new Response(req.method === "POST" ? req.body : "hello", { status: 201 });
  });
  try {
    const port = server.addr.port;
    const url = new URL(`http://images.example:${port}/a.png?size=1`);
    const got = await requestPinned({ url, addresses: ["127.0.0.1"] }, {
      method: "GET",
      signal: AbortSignal.timeout(5000),
    });
    assert.equal(got.status, 201);
    assert.equal(await got.text(), "hello");
    const posted = await requestPinned({ url, addresses: ["127.0.0.1"] }, {
      method: "POST",
      body: '{"ok":true}',
      headers: { "content-type": "application/json" },
      signal: AbortSignal.timeout(5000),
    });
    assert.equal(await posted.text(), '{"ok":true}');
    assert.deepEqual(seen, [
      { host: `images.example:${port}`, path: "/a.png" },
      { host: `images.example:${port}`, path: "/a.png" },
    ]);
  } finally {
    await server.shutdown();
  }
});

Deno.test("requestPinned() tries the next checked address when one cannot be connected to", async () => {
  // Nothing listens on 127.0.0.2 (and the tests may not even connect there).
  const answering = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response("answered"),
  );
  try {
    const url = new URL(`http://two.example:${answering.addr.port}/`);
    const request = { method: "GET" as const, signal: AbortSignal.timeout(5000) };
    await assert.rejects(requestPinned({ url, addresses: ["127.0.0.2"] }, request));
    const res = await requestPinned({ url, addresses: ["127.0.0.2", "127.0.0.1"] }, request);
    assert.equal(await res.text(), "answered");
  } finally {
    await answering.shutdown();
  }
});

Deno.test("requestPinned() checks an HTTPS certificate against the URL's host, not the address it connects to", async () => {
  const report = await runProbe<TlsProbeReport>(
    "tests/support/tls_probe.ts",
    ["--allow-net=127.0.0.1", "--allow-read", "--allow-env", "--allow-sys"],
    { NODE_EXTRA_CA_CERTS: "tests/support/tls/ca.pem" },
  );
  const port = /host=pinned\.example\.test:(\d+)$/.exec(report["pinned.example.test"].body ?? "");
  assert.equal(report["pinned.example.test"].status, 200, JSON.stringify(report));
  assert.ok(port, "the Host header named the URL's host");
  assert.match(report["other.example.test"].error ?? "", /altnames/);
});
