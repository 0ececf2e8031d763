/**
 * The console: the gateway's own web page at `/`, with its script and style.
 * The three files are imported as text, so they travel inside the Lambda
 * bundle and need no file system at run time. They hold no data: the page
 * asks for a key (when keys are set) and reads everything through the API.
 */
import type { Handler } from "hono";
import page from "./console/index.html" with { type: "text" };
import script from "./console/console.js" with { type: "text" };
import style from "./console/console.css" with { type: "text" };
import type { GatewayEnv } from "./http_context.ts";

/** The paths the console is served on; they need no key. */
export const CONSOLE_PATHS = ["/", "/console.js", "/console.css"] as const;

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

/** Serves one of the console's files. */
export function consoleFile(file: "page" | "script" | "style"): Handler<GatewayEnv> {
  const [body, type] = file === "page"
    ? [page, "text/html; charset=utf-8"]
    : file === "script"
    ? [script, "text/javascript; charset=utf-8"]
    : [style, "text/css; charset=utf-8"];
  return function serveConsoleFile(c) {
    return c.body(body, 200, { ...SECURITY_HEADERS, "content-type": type });
  };
}

/** The console's size in bytes, as the bundle carries it. */
export function consoleBytes(): number {
  return [page, script, style].reduce(
    (sum, text) => sum + new TextEncoder().encode(text).length,
    0,
  );
}
