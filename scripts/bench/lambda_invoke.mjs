// Times a bundled Lambda handler's cold start in this fresh Node.js process:
//   node lambda_invoke.mjs <bundle.mjs> '<event JSON>'
// prints {"import_ms","first_ms","status","rss_mb"} as one JSON line.
import process from "node:process";
import { pathToFileURL } from "node:url";

const [bundle, eventJson] = process.argv.slice(2);
const event = JSON.parse(eventJson);
const context = { awsRequestId: "bench", getRemainingTimeInMillis: () => 29_000 };
const started = performance.now();
const { handler } = await import(pathToFileURL(bundle).href);
const imported = performance.now();
const result = await handler(event, context);
const answered = performance.now();
process.stdout.write(
  `\n${
    JSON.stringify({
      import_ms: imported - started,
      first_ms: answered - imported,
      status: result.statusCode,
      rss_mb: process.memoryUsage().rss / 2 ** 20,
    })
  }\n`,
);
