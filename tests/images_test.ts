/**
 * inlineImages(): http(s) images fetched for Ollama as data: URLs, with every
 * limit and address check, against a real image host on 127.0.0.1.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { type ChatMessage, type ImagePart, userMessage } from "../lib/core/messages.ts";
import { ImageCache } from "../lib/worker/image_cache.ts";
import { ImageError, type ImageFetchOptions, inlineImages } from "../lib/worker/images.ts";
import { fakeResolver } from "./support/fake_resolver.ts";
import { type ImageServer, JPEG, PNG, startImageServer } from "./support/image_server.ts";
import { within } from "./support/wait.ts";

Deno.test("inlineImages() inlines an image on an allowed loopback host and leaves its input as it was", async (t) => {
  const png = PNG;
  const server = startImageServer();
  try {
    await t.step("a PNG becomes a data: URL holding the served bytes", async () => {
      const url = `${server.origin}/cat.png`;
      const messages: ChatMessage[] = [
        { role: "system", content: "Describe images briefly." },
        userMessage("What is this?", [url]),
      ];
      const before = structuredClone(messages);
      const result = await inlineImages(messages, optionsFor(server));
      const inlined = imageUrls(result)[0];
      assert.match(inlined, /^data:image\/png;base64,/);
      assert.deepEqual(decodeDataUrl(inlined), png);
      assert.deepEqual(messages, before, "the stored history keeps the original URL");
      assert.equal(imageUrls(messages)[0], url);
      assert.notEqual(result[1], messages[1]);
      assert.deepEqual(result[0], messages[0]);
    });

    await t.step(
      "JPEG and WebP are recognised by their bytes, whatever the header says",
      async () => {
        const result = await inlineImages(
          [userMessage("Two", [`${server.origin}/photo.jpg`, `${server.origin}/sticker.webp`])],
          optionsFor(server),
        );
        const [jpeg, webp] = imageUrls(result);
        assert.match(jpeg, /^data:image\/jpeg;base64,/);
        assert.deepEqual(decodeDataUrl(jpeg), JPEG);
        assert.match(webp, /^data:image\/webp;base64,/);
      },
    );

    await t.step("the same URL appearing several times is fetched once", async () => {
      const url = `${server.origin}/cat.png`;
      const hitsBefore = server.hits.get("/cat.png") ?? 0;
      const result = await inlineImages(
        [userMessage("One", [url, url]), userMessage("Again", [url])],
        optionsFor(server),
      );
      assert.equal(server.hits.get("/cat.png"), hitsBefore + 1);
      assert.equal(new Set(imageUrls(result)).size, 1);
    });

    await t.step("a host allowed without a port is allowed on any port", async () => {
      const options = optionsFor(server, { allowedHosts: ["127.0.0.1"] });
      const result = await inlineImages([userMessage("Hi", [`${server.origin}/cat.png`])], options);
      assert.match(imageUrls(result)[0], /^data:image\/png;base64,/);
    });
  } finally {
    await server.stop();
  }
});

Deno.test("inlineImages() refuses an image on loopback, private or metadata addresses", async (t) => {
  const server = startImageServer();
  try {
    await t.step("the loopback server without an allow-list entry is not contacted", async () => {
      await assertRefused(
        inlineImages(
          [userMessage("Hi", [`${server.origin}/cat.png`])],
          optionsFor(server, { allowedHosts: [] }),
        ),
        /^Cannot use image "http:\/\/127\.0\.0\.1:\d+\/cat\.png": 127\.0\.0\.1 is not a public address \(loopback\)$/,
      );
      assert.equal(server.hits.size, 0);
    });

    await t.step("a name resolving to loopback or the metadata address is refused", async () => {
      const dns = fakeResolver({
        localhost: ["127.0.0.1"],
        "metadata.example": ["169.254.169.254"],
      });
      const options = optionsFor(server, { allowedHosts: [], resolve: dns.resolve });
      await assertRefused(
        inlineImages([userMessage("Hi", [`http://localhost:${server.port}/cat.png`])], options),
        /host "localhost" resolves to 127\.0\.0\.1, which is not a public address \(loopback\)/,
      );
      await assertRefused(
        inlineImages([userMessage("Hi", ["http://metadata.example/latest/meta-data/"])], options),
        /169\.254\.169\.254, which is not a public address \(link-local\)/,
      );
      assert.deepEqual(dns.asked, ["localhost", "metadata.example"]);
      assert.equal(server.hits.size, 0);
    });
  } finally {
    await server.stop();
  }
});

Deno.test("inlineImages() refuses images that are not what they claim, too big, missing or slow", async (t) => {
  const server = startImageServer();
  try {
    await t.step("text served as image/png is refused by its bytes", async () => {
      await assertRefused(
        inlineImages([userMessage("Hi", [`${server.origin}/not-really.png`])], optionsFor(server)),
        /content \(sent as "image\/png"\) is not a PNG, JPEG or WebP image$/,
      );
    });

    await t.step("a body whose Content-Length is over the limit is refused", async () => {
      await assertRefused(
        inlineImages(
          [userMessage("Hi", [`${server.origin}/huge.png`])],
          optionsFor(server, { maxBytes: 1024 }),
        ),
        /image is 4096 bytes, more than the 1024-byte limit$/,
      );
    });

    await t.step("an endless body is cut off at the limit, long before the timeout", async () => {
      // A timeout of ten minutes: only the byte limit can end this within the deadline.
      await assertRefused(
        within(
          inlineImages(
            [userMessage("Hi", [`${server.origin}/endless.png`])],
            optionsFor(server, { maxBytes: 64 * 1024, timeoutMs: 600_000 }),
          ),
          "the endless body to be cut off at the byte limit",
          60_000,
        ),
        /image is larger than the 65536-byte limit$/,
      );
    });

    await t.step("a 404 is refused, naming the status", async () => {
      await assertRefused(
        inlineImages([userMessage("Hi", [`${server.origin}/missing.png`])], optionsFor(server)),
        /server answered 404 Not Found$/,
      );
    });

    await t.step("a server that never answers, or never finishes, times out", async () => {
      for (const path of ["/slow", "/stalled.png"]) {
        await assertRefused(
          within(
            inlineImages(
              [userMessage("Hi", [`${server.origin}${path}`])],
              optionsFor(server, { timeoutMs: 300 }),
            ),
            `${path} to time out`,
            60_000,
          ),
          /no complete answer within 0\.3 s$/,
        );
      }
    });

    await t.step("a port nobody listens on is refused", async () => {
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const closedPort = listener.addr.port;
      listener.close();
      await assertRefused(
        inlineImages(
          [userMessage("Hi", [`http://127.0.0.1:${closedPort}/a.png`])],
          optionsFor(server, { allowedHosts: ["127.0.0.1"] }),
        ),
        /cannot fetch: /,
      );
    });
  } finally {
    await server.stop();
  }
});

Deno.test("inlineImages() follows at most three redirects and checks every hop again", async (t) => {
  const png = PNG;
  const server = startImageServer(png);
  try {
    await t.step("a redirect to another allowed path is followed", async () => {
      const result = await inlineImages(
        [userMessage("Hi", [`${server.origin}/moved`])],
        optionsFor(server),
      );
      assert.deepEqual(decodeDataUrl(imageUrls(result)[0]), png);
    });

    await t.step("three redirects are followed, a fourth is refused", async () => {
      const result = await inlineImages(
        [userMessage("Hi", [`${server.origin}/hop/3`])],
        optionsFor(server),
      );
      assert.deepEqual(decodeDataUrl(imageUrls(result)[0]), png);
      await assertRefused(
        inlineImages([userMessage("Hi", [`${server.origin}/hop/4`])], optionsFor(server)),
        /more than 3 redirects$/,
      );
    });

    await t.step("a redirect loop stops after the fourth request", async () => {
      await assertRefused(
        inlineImages([userMessage("Hi", [`${server.origin}/loop`])], optionsFor(server)),
        /more than 3 redirects$/,
      );
      assert.equal(server.hits.get("/loop"), 4);
    });

    await t.step(
      "a redirect to a loopback or private address is refused before it is followed",
      async () => {
        const dns = fakeResolver({ localhost: ["127.0.0.1"], "internal.example": ["10.0.0.1"] });
        const options = optionsFor(server, { resolve: dns.resolve });
        const catHits = server.hits.get("/cat.png") ?? 0;
        await assertRefused(
          inlineImages([userMessage("Hi", [`${server.origin}/to-localhost`])], options),
          /^Cannot use image "http:\/\/127\.0\.0\.1:\d+\/to-localhost": redirected to "http:\/\/localhost:\d+\/cat\.png": host "localhost" resolves to 127\.0\.0\.1/,
        );
        await assertRefused(
          inlineImages([userMessage("Hi", [`${server.origin}/to-private`])], options),
          /redirected to "http:\/\/internal\.example\/cat\.png": .*\(private\)$/,
        );
        assert.equal(server.hits.get("/cat.png") ?? 0, catHits);
      },
    );
  } finally {
    await server.stop();
  }
});

Deno.test("inlineImages() checks data: URLs and passes them through, and refuses other schemes", async (t) => {
  const png = PNG;
  const payload = Buffer.from(png).toString("base64");
  const options: ImageFetchOptions = {
    maxBytes: 1024,
    timeoutMs: 1000,
    allowedHosts: [],
    resolve: fakeResolver({}).resolve,
  };

  await t.step("a PNG data: URL passes through as it is", async () => {
    const url = `data:image/png;base64,${payload}`;
    const result = await inlineImages([userMessage("Hi", [url])], options);
    assert.equal(imageUrls(result)[0], url);
  });

  await t.step(
    "a wrong type, encoding, content or size is refused without the bytes in the message",
    async () => {
      const cases: [string, RegExp][] = [
        [`data:image/gif;base64,${payload}`, /data: URL type "image\/gif" is not one of/],
        [`data:text/plain;base64,${payload}`, /data: URL type "text\/plain"/],
        [`data:image/png,${payload}`, /data: URL is not base64-encoded$/],
        [`data:image/png;base64,${payload.slice(1)}`, /data: URL holds invalid base64$/],
        [`data:image/png;base64,${btoa("just some text!!")}`, /is not a PNG, JPEG or WebP image$/],
        [
          `data:image/png;base64,${
            Buffer.from(new Uint8Array(2048).fill(0x89)).toString("base64")
          }`,
          /image is 2048 bytes, more than the 1024-byte limit$/,
        ],
      ];
      for (const [url, pattern] of cases) {
        const err = await assertRefused(inlineImages([userMessage("Hi", [url])], options), pattern);
        assert.ok(!err.message.includes(payload.slice(0, 12)), err.message);
      }
    },
  );

  await t.step("ftp:, file: and what is not a URL are refused", async () => {
    await assertRefused(
      inlineImages([userMessage("Hi", ["ftp://files.example/cat.png"])], options),
      /scheme "ftp:" is not accepted; use http, https or data:$/,
    );
    await assertRefused(
      inlineImages([userMessage("Hi", ["file:///etc/passwd"])], options),
      /scheme "file:" is not accepted/,
    );
    await assertRefused(
      inlineImages([userMessage("Hi", ["cat.png"])], options),
      /^Cannot use image "cat\.png": not a valid URL$/,
    );
  });

  await t.step("a long URL is shortened and credentials are left out of the message", async () => {
    const long = await assertRefused(
      inlineImages([userMessage("Hi", [`ftp://files.example/${"a".repeat(5000)}.png`])], options),
      /scheme "ftp:"/,
    );
    assert.ok(long.message.length < 300, `${long.message.length} characters`);
    const withPassword = await assertRefused(
      inlineImages([userMessage("Hi", ["https://me:hunter2@images.example/a.png"])], options),
      /user name or password/,
    );
    assert.ok(!withPassword.message.includes("hunter2"), withPassword.message);
  });
});

Deno.test("inlineImages() passes messages without images through unchanged, fetching nothing", async () => {
  const dns = fakeResolver({});
  const messages: ChatMessage[] = [
    { role: "system", content: "Be brief." },
    { role: "user", content: [{ type: "text", text: "Hello" }, { type: "text", text: "there" }] },
    { role: "assistant", content: "Hi!" },
  ];
  const before = structuredClone(messages);
  const result = await inlineImages(messages, {
    maxBytes: 1024,
    timeoutMs: 1000,
    allowedHosts: [],
    resolve: dns.resolve,
  });
  assert.deepEqual(result, before);
  assert.deepEqual(messages, before);
  assert.notEqual(result[1], messages[1]);
  assert.deepEqual(dns.asked, []);
  assert.deepEqual(await inlineImages([], { maxBytes: 1, timeoutMs: 1, allowedHosts: [] }), []);
});

// Test support: options for the test server, and reading the results.

/** Options allowing the test server, with a resolver that knows no names, so real DNS is never asked. */
function optionsFor(
  server: ImageServer,
  overrides: Partial<ImageFetchOptions> = {},
): ImageFetchOptions {
  return {
    maxBytes: 64 * 1024,
    timeoutMs: 2000,
    allowedHosts: [`127.0.0.1:${server.port}`],
    resolve: fakeResolver({}).resolve,
    ...overrides,
  };
}

async function assertRefused(promise: Promise<unknown>, pattern: RegExp): Promise<ImageError> {
  let caught: unknown;
  await assert.rejects(promise, (err) => {
    caught = err;
    return true;
  });
  assert.ok(caught instanceof ImageError, `expected an ImageError, got ${caught}`);
  assert.equal(caught.name, "ImageError");
  assert.match(caught.message, pattern);
  return caught;
}

function imageUrls(messages: readonly ChatMessage[]): string[] {
  return messages.flatMap((m) =>
    Array.isArray(m.content)
      ? m.content.filter((p): p is ImagePart => p.type === "image_url").map((p) => p.image_url.url)
      : []
  );
}

function decodeDataUrl(url: string): Uint8Array {
  return new Uint8Array(Buffer.from(url.slice(url.indexOf(",") + 1), "base64"));
}

Deno.test("inlineImages() gives a job's images one byte and time budget, the newest message first", async (t) => {
  const server = startImageServer();
  const hits = (path: string) => server.hits.get(path) ?? 0;
  try {
    await t.step("an older image past the byte budget becomes a note, unfetched", async () => {
      const result = await inlineImages(
        [
          userMessage("Earlier", [`${server.origin}/cat.png`]),
          userMessage("Now", [`${server.origin}/huge.png`]),
        ],
        optionsFor(server, { maxBytes: 4096, jobMaxBytes: 4096 }),
      );
      assert.match(imageUrls(result)[0], /^data:image\/png;base64,/);
      assert.deepEqual(result[0].content, [
        { type: "text", text: "Earlier" },
        {
          type: "text",
          text:
            `[image ${server.origin}/cat.png not shown: the job's images would pass their 4096-byte budget]`,
        },
      ]);
      assert.equal(hits("/cat.png"), 0);
    });

    await t.step("the newest message's images must all fit, or the job fails", async () => {
      await assertRefused(
        inlineImages(
          [userMessage("Now", [`${server.origin}/huge.png`, `${server.origin}/cat.png`])],
          optionsFor(server, { maxBytes: 4096, jobMaxBytes: 4096 }),
        ),
        /cat\.png": the job's images would pass their 4096-byte budget$/,
      );
    });

    await t.step(
      "a slow image uses up the job's time; later ones are not even asked for",
      async () => {
        const result = await inlineImages(
          [
            userMessage("First", [`${server.origin}/slow`]),
            userMessage("Second", [`${server.origin}/stalled.png`]),
            userMessage("Now", [`${server.origin}/cat.png`]),
          ],
          optionsFor(server, { timeoutMs: 300 }),
        );
        assert.match(imageUrls(result)[0], /^data:image\/png;base64,/);
        assert.match(
          JSON.stringify(result[1].content),
          /not shown: no complete answer within 0\.3 s/,
        );
        assert.match(
          JSON.stringify(result[0].content),
          /not fetched: the job's 0\.3 s for images ran out/,
        );
        assert.equal(hits("/slow"), 0);
      },
    );
  } finally {
    await server.stop();
  }
});

Deno.test("inlineImages() with a cache fetches an image once across jobs of one owner", async () => {
  const server = startImageServer();
  try {
    const cache = new ImageCache({ maxChars: 1_000_000, ttlMs: 60_000 });
    const turn = (owner: string) =>
      inlineImages(
        [userMessage("Look", [server.pngUrl]), userMessage("And now?", [])],
        optionsFor(server, { cache, owner }),
      );
    const first = await turn("alice");
    const second = await turn("alice");
    assert.deepEqual(second, first);
    assert.equal(server.hits.get("/cat.png"), 1, "the second turn used the cached image");
    await turn("bob");
    assert.equal(server.hits.get("/cat.png"), 2, "another owner's job fetched it itself");
  } finally {
    await server.stop();
  }
});

Deno.test("ImageCache keeps the most recently used images within its size, for a while", () => {
  let now = 0;
  const cache = new ImageCache({ maxChars: 10, ttlMs: 1000, now: () => now });
  cache.set("a", { dataUrl: "aaaa", bytes: 3 });
  cache.set("b", { dataUrl: "bbbb", bytes: 3 });
  assert.ok(cache.get("a"), "a is now the most recently used");
  cache.set("c", { dataUrl: "cccc", bytes: 3 });
  assert.equal(cache.get("b"), undefined, "b was the least recently used");
  assert.deepEqual(cache.get("a"), { dataUrl: "aaaa", bytes: 3 });
  assert.equal(cache.size, 8);
  cache.set("big", { dataUrl: "x".repeat(11), bytes: 8 });
  assert.equal(cache.get("big"), undefined, "an image bigger than the cache is not kept");
  now = 1001;
  assert.equal(cache.get("a"), undefined, "expired");
});
