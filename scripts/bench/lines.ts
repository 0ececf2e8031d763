/** The lines of a child process's output or of standard input, as they come. */
export async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buffer = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    buffer += text;
    const complete = buffer.split("\n");
    buffer = complete.pop() ?? "";
    yield* complete;
  }
  if (buffer) yield buffer;
}
