/** Text fit for messages and logs: cut to a length, and URLs without what they may hide. */

/** The text, cut to at most `max` characters with an ellipsis. */
export function shorten(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/**
 * A URL fit for a message or a log line: no user name or password, no query
 * or fragment (they often carry tokens), a data: URL only by its header, and
 * cut when long.
 */
export function describeUrl(url: string): string {
  if (url.startsWith("gateway-blob:")) return "an image sent inline";
  if (/^\s*data:/i.test(url)) {
    const comma = url.indexOf(",");
    return `${url.slice(0, comma === -1 ? 0 : Math.min(comma + 1, 60)).trim() || "data:"}…`;
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return shorten(url.trim(), 60); // not a URL: nothing in it is known to be a secret's place
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    return `a ${shorten(parsed.protocol, 20)} URL`;
  }
  const rest = parsed.search || parsed.hash ? "?…" : "";
  return shorten(`${parsed.protocol}//${parsed.host}${parsed.pathname}`, 160) + rest;
}
