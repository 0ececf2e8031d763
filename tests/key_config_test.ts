import assert from "node:assert/strict";
import { ConfigError, describeConfig, loadConfig } from "../lib/core/config.ts";
import { sha256Hex } from "../lib/core/digest.ts";
import { keyOf } from "../lib/core/key_config.ts";

const ownerOf = async (key: string) => (await sha256Hex(key)).slice(0, 16);

Deno.test("keys take names before a colon, and a key without one keeps working", async () => {
  const bobDigest = await sha256Hex("sk-bob");
  const config = loadConfig({
    GATEWAY_API_KEYS: "alice:sk-alice,sk-plain",
    GATEWAY_API_KEY_SHA256: `bob:${bobDigest.toUpperCase()}`,
    GATEWAY_ADMIN_KEYS: "root:sk-root",
  });
  assert.deepEqual(config.apiKeys, ["sk-alice", "sk-plain"], "the keys, without their names");
  assert.deepEqual(config.apiKeyDigests, [bobDigest], "digests lower-cased, names taken off");
  assert.deepEqual(config.adminKeys, ["sk-root"]);
  const plain = await ownerOf("sk-plain");
  assert.deepEqual(
    config.keys.map((k) => [k.name, k.owner, k.admin]),
    [
      ["alice", await ownerOf("sk-alice"), false],
      ["key-" + plain.slice(0, 8), plain, false],
      ["bob", bobDigest.slice(0, 16), false],
      ["root", await ownerOf("sk-root"), true],
    ],
  );
  assert.equal(keyOf(config.keys, await ownerOf("sk-alice"))?.name, "alice");
  assert.equal(keyOf(config.keys, "0000000000000000"), undefined);
  const shown = JSON.stringify(describeConfig(config));
  for (const secret of ["sk-alice", "sk-plain", "sk-root", bobDigest]) {
    assert.ok(!shown.includes(secret), `the start-up line shows no ${secret}`);
  }
  assert.match(shown, /"name":"alice"/);
});

Deno.test("a key whose text has a colon after something that is no name stays one key", () => {
  const config = loadConfig({ GATEWAY_API_KEYS: "9x:abc,:def" });
  assert.deepEqual(config.apiKeys, ["9x:abc", ":def"]);
});

Deno.test("limits are given by key name, with * for every API key and none for admin keys", () => {
  const config = loadConfig({
    GATEWAY_API_KEYS: "alice:a1,bob:b1,carol:c1",
    GATEWAY_ADMIN_KEYS: "root:r1",
    GATEWAY_KEY_LIMITS: "alice:rpm=60;tpm=100000;in_flight=2;waiting=50, bob:rpm=10, *:in_flight=1",
    LIMIT_WINDOW_S: "5",
  });
  const limits = Object.fromEntries(config.keys.map((k) => [k.name, k.limits]));
  assert.deepEqual(limits, {
    alice: { rpm: 60, tpm: 100000, in_flight: 2, waiting: 50 },
    bob: { in_flight: 1, rpm: 10 },
    carol: { in_flight: 1 },
    root: {},
  });
  assert.equal(config.limitWindowSeconds, 5);
  assert.equal(loadConfig({}).limitWindowSeconds, 60, "per minute unless told");
});

Deno.test("every problem with keys and limits is named in one error", () => {
  assert.throws(
    () =>
      loadConfig({
        GATEWAY_API_KEYS: "alice:a1,alice:a2",
        GATEWAY_ADMIN_KEYS: "boss:a1",
        GATEWAY_KEY_LIMITS: "dave:rpm=1,alice:rpm=0;speed=3,alice:tpm=5,nocolon",
      }),
    (err: Error) => {
      assert.ok(err instanceof ConfigError);
      const expected = [
        /GATEWAY_ADMIN_KEYS names a key "boss" that GATEWAY_API_KEYS already names "alice"/,
        /Key names must differ: "alice" names more than one key/,
        /GATEWAY_KEY_LIMITS names "dave", which is no configured key's name/,
        /entry "alice" has rpm=0: it must be a whole number of at least 1/,
        /entry "alice" has "speed=3": a limit is one of rpm, tpm, in_flight, waiting/,
        /GATEWAY_KEY_LIMITS gives "alice" limits twice/,
        /entry "nocolon" must be a key name, a colon, then limits/,
      ];
      for (const pattern of expected) assert.match(err.message, pattern);
      return true;
    },
  );
});

Deno.test("limits without keys are refused: there is nobody to limit", () => {
  assert.throws(
    () => loadConfig({ GATEWAY_KEY_LIMITS: "*:rpm=5" }),
    /GATEWAY_KEY_LIMITS needs API keys to limit/,
  );
});
