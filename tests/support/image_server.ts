/**
 * A real image host on 127.0.0.1: a PNG, a JPEG and a WebP, images that lie
 * about their type, huge, endless and stalled bodies, and redirects, as the
 * worker meets them when it inlines images for Ollama.
 */

/** A valid 1×1 RGBA PNG. */
export const PNG = Uint8Array.from(
  atob(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAAE0lEQVR4nGL438DwHwAAAP//AwAGgAJ/Bt3jHQAAAABJRU5ErkJggg==",
  ),
  (c) => c.charCodeAt(0),
);
/** A JPEG's first bytes: enough for a check by magic number. */
export const JPEG = Uint8Array.from([
  0xff,
  0xd8,
  0xff,
  0xe0,
  0x00,
  0x10,
  ...ascii("JFIF"),
  0,
  1,
  1,
]);
/** A WebP's first bytes. */
export const WEBP = Uint8Array.from([
  ...ascii("RIFF"),
  12,
  0,
  0,
  0,
  ...ascii("WEBPVP8L"),
  0,
  0,
  0,
  0,
]);

/** A running image host. */
export interface ImageServer {
  /** e.g. http://127.0.0.1:41234 */
  readonly origin: string;
  /** `host:port`, to list in IMAGE_ALLOWED_HOSTS. */
  readonly host: string;
  readonly port: number;
  /** The URL of the PNG. */
  readonly pngUrl: string;
  /** Requests per path. */
  readonly hits: Map<string, number>;
  stop(): Promise<void>;
}

/** The data: URL of {@linkcode PNG}, as the worker sends it to Ollama. */
export function pngDataUrl(): string {
  return `data:image/png;base64,${btoa(String.fromCharCode(...PNG))}`;
}

/** Starts the image host on a free loopback port. */
export function startImageServer(png: Uint8Array = PNG): ImageServer {
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
  const host = `127.0.0.1:${server.addr.port}`;
  return {
    origin: `http://${host}`,
    host,
    port: server.addr.port,
    pngUrl: `http://${host}/cat.png`,
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

function ascii(text: string): number[] {
  return [...text].map((c) => c.charCodeAt(0));
}
