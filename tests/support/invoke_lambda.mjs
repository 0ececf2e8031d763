// Runs a bundled Lambda handler under Node.js, as the Lambda runtime would:
//   node invoke_lambda.mjs <bundle.mjs> <results.json> < events.json
// reads a JSON array of events on stdin, invokes `handler` with each in turn
// (one warm container), and writes the JSON array of its results to a file,
// since stdout carries the gateway's log lines.
import { writeFile } from "node:fs/promises";
import process from "node:process";
import { text } from "node:stream/consumers";
import { pathToFileURL } from "node:url";

const [bundle, resultsFile] = process.argv.slice(2);
const events = JSON.parse(await text(process.stdin));
const { handler } = await import(pathToFileURL(bundle).href);
const context = { awsRequestId: "invoke-lambda", getRemainingTimeInMillis: () => 29_000 };
const results = [];
for (const event of events) results.push(await handler(event, context));
await writeFile(resultsFile, JSON.stringify(results));
