/** A real HTTP server on 127.0.0.1 that serves a small PNG, as an image host would. */

/** The bytes served: a PNG signature and an empty IHDR-less body; only the magic number matters here. */
export const PNG_BYTES = new Uint8Array([
  0x89,
  0x50,
  0x4e,
  0x47,
  0x0d,
  0x0a,
  0x1a,
  0x0a,
  1,
  2,
  3,
  4,
]);

/** A running image server. */
export interface ImageServer {
  /** `host:port`, to list in IMAGE_ALLOWED_HOSTS. */
  readonly host: string;
  /** The URL of the PNG. */
  readonly pngUrl: string;
  stop(): Promise<void>;
}

/** Starts an image server on a free loopback port. */
export function startImageServer(): ImageServer {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    if (new URL(req.url).pathname === "/cat.png") {
      return new Response(PNG_BYTES, { headers: { "content-type": "image/png" } });
    }
    return new Response("not found", { status: 404 });
  });
  const host = `127.0.0.1:${server.addr.port}`;
  return { host, pngUrl: `http://${host}/cat.png`, stop: () => server.shutdown() };
}

/** The data URL the worker should send for {@linkcode PNG_BYTES}. */
export function pngDataUrl(): string {
  return `data:image/png;base64,${btoa(String.fromCharCode(...PNG_BYTES))}`;
}
