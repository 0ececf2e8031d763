/**
 * The console: the gateway's own web page at `/`, with its scripts and style.
 * The files are read from the `console/` folder beside this module at
 * their first request and kept: `deno task build` copies the folder next to
 * the Lambda bundle, so they are static files in the deployment rather than
 * strings every cold start parses. They hold no data: the page asks for a key
 * (when keys are set) and reads everything through the API.
 */
import { readFile } from "node:fs/promises";
import type { Handler } from "hono";
import type { GatewayEnv } from "./http_context.ts";

/** The console's files, by what they are. */
const FILES = {
  page: { name: "index.html", type: "text/html; charset=utf-8" },
  script: { name: "console.js", type: "text/javascript; charset=utf-8" },
  chat: { name: "console_chat.js", type: "text/javascript; charset=utf-8" },
  charts: { name: "charts.js", type: "text/javascript; charset=utf-8" },
  style: { name: "console.css", type: "text/css; charset=utf-8" },
} as const;

/** The folder they are in, beside this module (or beside the bundle). */
export const CONSOLE_DIR = new URL("./console/", import.meta.url);

/** The paths the console is served on; they need no key. */
export const CONSOLE_PATHS = [
  "/",
  "/console.js",
  "/console_chat.js",
  "/charts.js",
  "/console.css",
] as const;

/**
 * Only the gateway's own files, no inline code, no framing: data shown by
 * the page (model replies, error messages) cannot become script.
 */
const SECURITY_HEADERS = {
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; " +
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; " +
    "frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  // Short, so a new release is picked up soon after a deploy.
  "cache-control": "public, max-age=300",
};

/** Serves one of the console's files, read once. */
export function consoleFile(file: keyof typeof FILES): Handler<GatewayEnv> {
  const { name, type } = FILES[file];
  let body: Promise<Uint8Array<ArrayBuffer>> | undefined;
  return async function serveConsoleFile(c) {
    body ??= readFile(new URL(name, CONSOLE_DIR)).then((bytes) => new Uint8Array(bytes));
    // A failed read is not kept: the next request tries again.
    const bytes = await body.catch((err) => {
      body = undefined;
      throw err;
    });
    return c.body(bytes, 200, { ...SECURITY_HEADERS, "content-type": type });
  };
}
