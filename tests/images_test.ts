import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  checkImageUrl,
  ImageError,
  type ImageFetchOptions,
  inlineImages,
  parseAllowedHosts,
} from "../lib/images.ts";
import { isForbiddenAddress } from "../lib/ip_address.ts";
import { type ChatMessage, type ImagePart, userMessage } from "../lib/messages.ts";

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const JPEG = Uint8Array.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, ...ascii("JFIF"), 0, 1, 1]);
const WEBP = Uint8Array.from([...ascii("RIFF"), 12, 0, 0, 0, ...ascii("WEBPVP8L"), 0, 0, 0, 0]);

Deno.test("an image on an allowed loopback host is inlined and the input is left as it was", async (t) => {
  const png = await tinyPng();
  const server = startImageServer(png);
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
      const options = optionsFor(server, { allowedHosts: parseAllowedHosts(" 127.0.0.1 ,") });
      const result = await inlineImages([userMessage("Hi", [`${server.origin}/cat.png`])], options);
      assert.match(imageUrls(result)[0], /^data:image\/png;base64,/);
    });
  } finally {
    await server.stop();
  }
});

Deno.test("a loopback, private or metadata address is refused unless its host is allowed", async (t) => {
  const server = startImageServer(await tinyPng());
  try {
    await t.step("the loopback server without an allow-list entry is not contacted", async () => {
      await assertRefused(
        inlineImages(
          [userMessage("Hi", [`${server.origin}/cat.png`])],
          optionsFor(server, {
            allowedHosts: [],
          }),
        ),
        /^Cannot use image "http:\/\/127\.0\.0\.1:\d+\/cat\.png": 127\.0\.0\.1 is not a public address \(loopback\)$/,
      );
      assert.equal(server.hits.size, 0);
    });

    await t.step("an allow-list entry for another port does not count", async () => {
      await assertRefused(
        checkImageUrl(
          `${server.origin}/cat.png`,
          optionsFor(server, {
            allowedHosts: ["127.0.0.1:1"],
          }),
        ),
        /loopback/,
      );
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

    await t.step("one private address among public ones is enough to refuse", async () => {
      const dns = fakeResolver({ "mixed.example": ["93.184.216.34", "10.0.0.7"] });
      await assertRefused(
        checkImageUrl("https://mixed.example/a.png", optionsFor(server, { resolve: dns.resolve })),
        /10\.0\.0\.7, which is not a public address \(private\)/,
      );
    });

    await t.step("a name without addresses or that fails to resolve is refused", async () => {
      const dns = fakeResolver({ "empty.example": [] });
      const options = optionsFor(server, { resolve: dns.resolve });
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
          optionsFor(server, { resolve: dns.resolve }),
        );
        assert.equal(url.hostname, "public.example");
        assert.deepEqual(dns.asked, ["public.example"]);
      },
    );

    await t.step("IP literals are judged as they are, without DNS", async () => {
      const dns = fakeResolver({});
      const options = optionsFor(server, { allowedHosts: [], resolve: dns.resolve });
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
      const options = optionsFor(server, { allowedHosts: ["[0:0::1]:8080"] });
      assert.ok(await checkImageUrl("http://[::1]:8080/a.png", options));
      await assertRefused(checkImageUrl("http://[::1]:8081/a.png", options), /loopback/);
    });
  } finally {
    await server.stop();
  }
});

Deno.test("isForbiddenAddress judges IPv4, IPv6, mapped and unparseable addresses", () => {
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

Deno.test("images that are not what they claim, too big, missing or slow are refused", async (t) => {
  const server = startImageServer(await tinyPng());
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
      const started = Date.now();
      await assertRefused(
        inlineImages(
          [userMessage("Hi", [`${server.origin}/endless.png`])],
          optionsFor(server, { maxBytes: 64 * 1024, timeoutMs: 5000 }),
        ),
        /image is larger than the 65536-byte limit$/,
      );
      assert.ok(Date.now() - started < 4000);
    });

    await t.step("a 404 is refused, naming the status", async () => {
      await assertRefused(
        inlineImages([userMessage("Hi", [`${server.origin}/missing.png`])], optionsFor(server)),
        /server answered 404 Not Found$/,
      );
    });

    await t.step("a server that never answers, or never finishes, times out", async () => {
      for (const path of ["/slow", "/stalled.png"]) {
        const started = Date.now();
        await assertRefused(
          inlineImages(
            [userMessage("Hi", [`${server.origin}${path}`])],
            optionsFor(server, { timeoutMs: 300 }),
          ),
          /no complete answer within 0\.3 s$/,
        );
        assert.ok(Date.now() - started < 2000, path);
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

Deno.test("redirects are followed at most three times and every hop is checked again", async (t) => {
  const png = await tinyPng();
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

Deno.test("data: URLs are checked and passed through, other schemes are refused", async (t) => {
  const png = await tinyPng();
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

Deno.test("messages without images pass through unchanged and nothing is fetched", async () => {
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

Deno.test("parseAllowedHosts trims, lowercases and drops empty entries", () => {
  assert.deepEqual(parseAllowedHosts(" Images.Example , 127.0.0.1:8080,,[::1]:9000 , "), [
    "images.example",
    "127.0.0.1:8080",
    "[::1]:9000",
  ]);
  assert.deepEqual(parseAllowedHosts(undefined), []);
  assert.deepEqual(parseAllowedHosts(""), []);
});

// Test support: a real image server on loopback, a fake resolver, a tiny PNG.

interface ImageServer {
  readonly origin: string;
  readonly port: number;
  /** Requests per path. */
  readonly hits: Map<string, number>;
  stop(): Promise<void>;
}

function startImageServer(png: Uint8Array): ImageServer {
  const hits = new Map<string, number>();
  const stopping = new AbortController();
  const stopped = new Promise<void>((resolve) =>
    stopping.signal.addEventListener("abort", () => resolve(), { once: true })
  );
  const image = (bytes: Uint8Array, type: string) =>
    new Response(bytes.slice(), { headers: { "content-type": type } });
  const redirect = (location: string) => new Response(null, { status: 302, headers: { location } });
  const server: Deno.HttpServer<Deno.NetAddr> = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: () => {},
  }, async (req): Promise<Response> => {
    const { pathname } = new URL(req.url);
    hits.set(pathname, (hits.get(pathname) ?? 0) + 1);
    const hop = /^\/hop\/(\d+)$/.exec(pathname);
    if (hop) {
      return hop[1] === "0" ? image(png, "image/png") : redirect(`/hop/${Number(hop[1]) - 1}`);
    }
    switch (pathname) {
      case "/cat.png":
        return image(png, "image/png");
      case "/photo.jpg":
        return image(JPEG, "application/octet-stream");
      case "/sticker.webp":
        return image(WEBP, "application/octet-stream");
      case "/not-really.png":
        return image(new TextEncoder().encode("just some text"), "image/png");
      case "/huge.png":
        return image(Uint8Array.from({ length: 4096 }, (_, i) => png[i] ?? 0), "image/png");
      case "/endless.png":
        return new Response(endlessPng(png, stopping.signal), {
          headers: { "content-type": "image/png" },
        });
      case "/stalled.png":
        return new Response(stalledPng(png, stopped), { headers: { "content-type": "image/png" } });
      case "/slow":
        await stopped;
        return new Response("too late", { status: 503 });
      case "/moved":
        return redirect("/cat.png");
      case "/loop":
        return redirect("/loop");
      case "/to-localhost":
        return redirect(`http://localhost:${server.addr.port}/cat.png`);
      case "/to-private":
        return redirect("http://internal.example/cat.png");
      default:
        return new Response("not found", { status: 404 });
    }
  });
  return {
    origin: `http://127.0.0.1:${server.addr.port}`,
    port: server.addr.port,
    hits,
    stop: async () => {
      stopping.abort();
      await server.shutdown();
    },
  };
}

/** A PNG signature followed by filler, forever, until the reader gives up or the server stops. */
function endlessPng(png: Uint8Array, stop: AbortSignal): ReadableStream<Uint8Array> {
  let first = true;
  return new ReadableStream({
    pull(controller) {
      if (stop.aborted) return controller.close();
      controller.enqueue(first ? png.slice() : new Uint8Array(16 * 1024));
      first = false;
    },
  });
}

/** A PNG signature, then nothing more until the server stops. */
function stalledPng(png: Uint8Array, stopped: Promise<void>): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      controller.enqueue(png.slice(0, 8));
    },
    async pull(controller) {
      await stopped;
      try {
        controller.close();
      } catch {
        // the client already went away
      }
    },
  });
}

/** A resolver answering from a table and recording what it was asked; unknown names fail. */
function fakeResolver(table: Record<string, string[]>) {
  const asked: string[] = [];
  const resolve = (hostname: string): Promise<string[]> => {
    asked.push(hostname);
    const addresses = table[hostname];
    return addresses
      ? Promise.resolve(addresses)
      : Promise.reject(new Error(`no test address for ${hostname}`));
  };
  return { resolve, asked };
}

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

function ascii(text: string): number[] {
  return [...text].map((c) => c.charCodeAt(0));
}

/** A valid 1×1 RGBA PNG: signature, IHDR, zlib-compressed IDAT, IEND. */
async function tinyPng(): Promise<Uint8Array> {
  const header = new Uint8Array(13);
  new DataView(header.buffer).setUint32(0, 1);
  new DataView(header.buffer).setUint32(4, 1);
  header.set([8, 6, 0, 0, 0], 8);
  const scanline = new Blob([new Uint8Array([0, 255, 128, 0, 255])]);
  const compressed = await new Response(
    scanline.stream().pipeThrough(new CompressionStream("deflate")),
  )
    .bytes();
  const parts = [
    Uint8Array.from(PNG_SIGNATURE),
    pngChunk("IHDR", header),
    pngChunk("IDAT", compressed),
    pngChunk("IEND", new Uint8Array()),
  ];
  return new Uint8Array(parts.flatMap((p) => [...p]));
}

function pngChunk(type: string, data: Uint8Array): Uint8Array {
  const chunk = new Uint8Array(12 + data.length);
  const view = new DataView(chunk.buffer);
  view.setUint32(0, data.length);
  chunk.set(ascii(type), 4);
  chunk.set(data, 8);
  view.setUint32(8 + data.length, crc32(chunk.subarray(4, 8 + data.length)));
  return chunk;
}

function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  return (crc ^ 0xffffffff) >>> 0;
}
