/**
 * checkOutboundUrl() and the address rules behind it: which hosts the worker
 * may reach for an image or a callback, judged without fetching anything.
 */
import assert from "node:assert/strict";
import { checkOutboundUrl, OutboundRefusal } from "../lib/outbound/address_check.ts";
import { isForbiddenAddress } from "../lib/outbound/ip_address.ts";
import { fakeResolver } from "./support/fake_resolver.ts";

/** The checks as the worker runs them for an image on the test server's port. */
function checkImageUrl(
  url: string,
  options: { allowedHosts?: string[]; resolve?: (host: string) => Promise<string[]> } = {},
): Promise<URL> {
  return checkOutboundUrl(url, {
    allowedHosts: options.allowedHosts ?? [],
    resolve: options.resolve ?? fakeResolver({}).resolve,
    signal: AbortSignal.timeout(2000),
  });
}

async function assertRefused(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof OutboundRefusal, `expected an OutboundRefusal, got ${err}`);
    assert.match(err.message, pattern);
    return true;
  });
}

Deno.test("checkOutboundUrl() refuses loopback, private and metadata addresses unless the host is allowed", async (t) => {
  await t.step("an allow-list entry for another port does not count", async () => {
    await assertRefused(
      checkImageUrl(
        "http://127.0.0.1:8080/cat.png",
        { allowedHosts: ["127.0.0.1:1"] },
      ),
      /loopback/,
    );
  });

  await t.step("a name resolving to loopback or the metadata address is refused", async () => {
    const dns = fakeResolver({
      localhost: ["127.0.0.1"],
      "metadata.example": ["169.254.169.254"],
    });
    const options = { resolve: dns.resolve };
    await assertRefused(
      checkImageUrl("http://localhost:8080/cat.png", options),
      /host "localhost" resolves to 127\.0\.0\.1, which is not a public address \(loopback\)/,
    );
    await assertRefused(
      checkImageUrl("http://metadata.example/latest/meta-data/", options),
      /169\.254\.169\.254, which is not a public address \(link-local\)/,
    );
    assert.deepEqual(dns.asked, ["localhost", "metadata.example"]);
  });

  await t.step("one private address among public ones is enough to refuse", async () => {
    const dns = fakeResolver({ "mixed.example": ["93.184.216.34", "10.0.0.7"] });
    await assertRefused(
      checkImageUrl("https://mixed.example/a.png", { resolve: dns.resolve }),
      /10\.0\.0\.7, which is not a public address \(private\)/,
    );
  });

  await t.step("a name without addresses or that fails to resolve is refused", async () => {
    const dns = fakeResolver({ "empty.example": [] });
    const options = { resolve: dns.resolve };
    await assertRefused(
      checkImageUrl("https://empty.example/a.png", options),
      /host "empty\.example" has no addresses/,
    );
    await assertRefused(
      checkImageUrl("https://unknown.example/a.png", options),
      /cannot resolve host "unknown\.example"/,
    );
  });

  await t.step(
    "a name resolving to public addresses passes the check, without a fetch",
    async () => {
      const dns = fakeResolver({
        "public.example": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
      });
      const url = await checkImageUrl(
        "https://public.example/cat.png",
        { resolve: dns.resolve },
      );
      assert.equal(url.hostname, "public.example");
      assert.deepEqual(dns.asked, ["public.example"]);
    },
  );

  await t.step("IP literals are judged as they are, without DNS", async () => {
    const dns = fakeResolver({});
    const options = { resolve: dns.resolve };
    for (
      const url of [
        "http://[::1]/a.png",
        "http://[::ffff:127.0.0.1]/a.png",
        "http://0x7f.1/a.png",
        "http://2130706433/a.png",
        "http://[fd00::5]:8080/a.png",
      ]
    ) {
      await assertRefused(checkImageUrl(url, options), /is not a public address/);
    }
    assert.equal((await checkImageUrl("http://8.8.8.8/a.png", options)).hostname, "8.8.8.8");
    assert.deepEqual(dns.asked, []);
  });

  await t.step("an IPv6 host can be allowed in brackets", async () => {
    const options = { allowedHosts: ["[0:0::1]:8080"] };
    assert.ok(await checkImageUrl("http://[::1]:8080/a.png", options));
    await assertRefused(checkImageUrl("http://[::1]:8081/a.png", options), /loopback/);
  });
});

Deno.test("checkOutboundUrl() refuses other schemes and URLs with credentials", async () => {
  await assertRefused(
    checkImageUrl("ftp://example.com/a.png"),
    /scheme "ftp:" is not accepted; use http or https$/,
  );
  await assertRefused(checkImageUrl("http://user:pass@example.com/a.png"), /user name or password/);
  await assertRefused(checkImageUrl("cat.png"), /^not a valid URL$/);
});

Deno.test("isForbiddenAddress() judges IPv4, IPv6, mapped and unparseable addresses", () => {
  const forbidden = [
    "127.0.0.1",
    "127.255.255.254",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "100.127.255.255",
    "0.0.0.0",
    "224.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "0:0:0:0:0:0:0:1",
    "[::1]",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fe80::1%eth0",
    "febf::1",
    "::ffff:127.0.0.1",
    "::ffff:7f00:1",
    "::FFFF:A9FE:A9FE",
    "0:0:0:0:0:ffff:10.0.0.1",
    "::127.0.0.1",
    "64:ff9b::a9fe:a9fe",
    "2002:c0a8:101::",
  ];
  const garbage = [
    "",
    "localhost",
    "1.2.3",
    "1.2.3.4.5",
    "256.1.1.1",
    "01.2.3.4",
    "0x7f.0.0.1",
    " 8.8.8.8",
    "1::2::3",
    "12345::",
    ":::",
    "::ffff:1.2.3",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7::8",
    "fe80::1%",
    "1.2.3.4::",
  ];
  const allowed = [
    "8.8.8.8",
    "93.184.216.34",
    "11.0.0.1",
    "172.15.255.255",
    "172.32.0.1",
    "100.63.255.255",
    "100.128.0.1",
    "169.253.255.255",
    "192.167.1.1",
    "223.255.255.255",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
    "::ffff:808:808",
    "64:ff9b::808:808",
    "1:2:3:4:5:6:7:8",
  ];
  for (const ip of [...forbidden, ...garbage]) assert.equal(isForbiddenAddress(ip), true, ip);
  for (const ip of allowed) assert.equal(isForbiddenAddress(ip), false, ip);
});
