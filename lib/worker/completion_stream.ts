/** Reads an OpenAI-compatible backend's streamed reply (server-sent events) as it arrives. */

/** How much of a bad data line an error message quotes. */
const QUOTE_CHARS = 200;

/** Yields the text of each delta in an OpenAI-compatible server-sent-events stream. */
export async function* readCompletionStream(
  body: ReadableStream<Uint8Array>,
): AsyncGenerator<string> {
  for await (const data of sseData(body)) {
    if (data === "[DONE]") return;
    const content = deltaContent(data);
    if (content) yield content;
  }
}

function deltaContent(data: string): string | undefined {
  let event: unknown;
  try {
    event = JSON.parse(data);
  } catch {
    throw new Error(
      `Cannot read completion stream: malformed JSON in data line: ${data.slice(0, QUOTE_CHARS)}`,
    );
  }
  if (typeof event !== "object" || event === null) return undefined;
  if ("error" in event && event.error != null) {
    throw new Error(
      `Cannot read completion stream: backend sent an error: ${errorText(event.error)}`,
    );
  }
  const content = (event as { choices?: { delta?: { content?: unknown } }[] })
    .choices?.[0]?.delta?.content;
  return typeof content === "string" ? content : undefined;
}

function errorText(error: unknown): string {
  if (typeof error === "string") return error;
  const message = (error as { message?: unknown }).message;
  return typeof message === "string" ? message : JSON.stringify(error).slice(0, QUOTE_CHARS);
}

/** Yields the data of each event: its `data:` lines joined by newlines, as the SSE spec says. */
async function* sseData(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let data: string[] = [];
  for await (const line of lines(body)) {
    if (line === "") {
      if (data.length > 0) yield data.join("\n");
      data = [];
      continue;
    }
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    if (field !== "data") continue;
    const value = colon === -1 ? "" : line.slice(colon + 1);
    data.push(value.startsWith(" ") ? value.slice(1) : value);
  }
  // Be lenient with a server that closes without the final blank line.
  if (data.length > 0) yield data.join("\n");
}

/** Yields the lines of a UTF-8 stream, ended by `\n`, `\r\n` or `\r`. */
async function* lines(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end: number;
      while ((end = buffer.search(/[\r\n]/)) !== -1) {
        // A `\r` at the end of what has arrived may be the first half of `\r\n`.
        if (buffer[end] === "\r" && end === buffer.length - 1) break;
        const skip = buffer[end] === "\r" && buffer[end + 1] === "\n" ? 2 : 1;
        yield buffer.slice(0, end);
        buffer = buffer.slice(end + skip);
      }
    }
    if (buffer.endsWith("\r")) buffer = buffer.slice(0, -1);
    if (buffer !== "") yield buffer;
  } finally {
    // Stops the download when the reader ends early, e.g. at [DONE] or on an error.
    await reader.cancel().catch(() => {});
  }
}
