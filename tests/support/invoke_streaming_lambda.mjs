// Runs a bundled Lambda's streaming handler under Node.js as the Lambda
// runtime does for a function URL in RESPONSE_STREAM mode:
//   node invoke_streaming_lambda.mjs <bundle.mjs> <results.json> < event.json
// It installs a stand-in for the runtime's `awslambda` global before the
// bundle is imported (the runtime tells a streaming handler by the mark
// `streamifyResponse` puts on it), hands the handler a writable response
// stream, and writes what the client would get to a file: the HTTP prelude
// (status and headers, JSON followed by eight zero bytes, as the runtime's
// `HttpResponseStream.from` sends it), the body, and when each piece came.
import { writeFile } from "node:fs/promises";
import process from "node:process";
import { Writable } from "node:stream";
import { text } from "node:stream/consumers";
import { pathToFileURL } from "node:url";

const STREAMING = Symbol.for("aws.lambda.runtime.handler.streaming");
const PRELUDE_TYPE = "application/vnd.awslambda.http-integration-response";

globalThis.awslambda = {
  streamifyResponse(handler) {
    handler[STREAMING] = "response";
    return handler;
  },
  HttpResponseStream: {
    from(stream, prelude) {
      stream.setContentType(PRELUDE_TYPE);
      stream._onBeforeFirstWrite = (write) => {
        write(JSON.stringify(prelude));
        write(new Uint8Array(8));
      };
      return stream;
    },
  },
};

/** A response stream with the runtime's surface: what was written, when, and its content type. */
function responseStream() {
  const pieces = [];
  const started = Date.now();
  let contentType = "application/octet-stream";
  let written = false;
  const stream = new Writable({
    write(chunk, _encoding, done) {
      pieces.push({ at: Date.now() - started, bytes: Buffer.from(chunk) });
      done();
    },
  });
  const write = stream.write.bind(stream);
  stream.setContentType = (type) => {
    if (written) throw new Error("Cannot set content-type, too late.");
    contentType = type;
  };
  stream.write = (chunk, ...rest) => {
    if (!written && typeof stream._onBeforeFirstWrite === "function") {
      stream._onBeforeFirstWrite((piece) => write(piece));
    }
    written = true;
    const bytes = typeof chunk === "string" || chunk instanceof Uint8Array
      ? chunk
      : JSON.stringify(chunk);
    return write(bytes, ...rest);
  };
  const finished = new Promise((resolve, reject) => {
    stream.on("finish", resolve);
    stream.on("error", reject);
  });
  return { stream, pieces, finished, contentType: () => contentType };
}

const [bundle, resultsFile] = process.argv.slice(2);
const event = JSON.parse(await text(process.stdin));
const { streamingHandler } = await import(pathToFileURL(bundle).href);
if (streamingHandler?.[STREAMING] !== "response") {
  throw new Error("streamingHandler is not marked as a streaming handler");
}
const response = responseStream();
const context = { awsRequestId: "invoke-streaming", getRemainingTimeInMillis: () => 900_000 };
const returned = streamingHandler(event, response.stream, context);
if (typeof returned?.then !== "function") throw new Error("a streaming handler must be async");
await returned;
await response.finished;

const all = Buffer.concat(response.pieces.map((p) => p.bytes));
const end = all.indexOf(Buffer.alloc(8));
await writeFile(
  resultsFile,
  JSON.stringify({
    contentType: response.contentType(),
    prelude: end === -1 ? null : JSON.parse(all.subarray(0, end).toString()),
    body: (end === -1 ? all : all.subarray(end + 8)).toString(),
    // Each piece after the prelude's two writes, with when it came (ms).
    pieces: response.pieces.slice(2).map((p) => ({ at: p.at, text: p.bytes.toString() })),
  }),
);
