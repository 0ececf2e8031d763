import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { buildLambdaBundle } from "../scripts/build_lambda.ts";
import { startTestGateway, type TestGateway } from "./support/gateway.ts";
import { skipWithoutAwsEmulators, startAwsEmulators } from "./support/aws_emulators.ts";
import { httpApiEvent } from "./support/lambda_events.ts";

const INVOKE_LAMBDA = fileURLToPath(new URL("./support/invoke_lambda.mjs", import.meta.url));
const API_KEY = "test-key";

/** What the handler returns to API Gateway. */
interface LambdaResult {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
}

/** Imports the bundle in a fresh Node.js process and hands it the events, in order. */
async function invokeUnderNode(
  bundle: string,
  gateway: TestGateway,
  events: unknown[],
): Promise<LambdaResult[]> {
  const resultsFile = await Deno.makeTempFile({ suffix: ".json" });
  try {
    const env: Record<string, string> = { PATH: Deno.env.get("PATH") ?? "" };
    const home = Deno.env.get("HOME");
    if (home) env.HOME = home;
    for (const [key, value] of Object.entries(gateway.env)) {
      if (value !== undefined) env[key] = value;
    }
    const child = new Deno.Command("node", {
      args: [INVOKE_LAMBDA, bundle, resultsFile],
      env,
      clearEnv: true,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(JSON.stringify(events)));
    await writer.close();
    const { code, stdout, stderr } = await child.output();
    if (code !== 0) {
      const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
      const output = decode(stdout) + decode(stderr);
      throw new Error(`Cannot invoke the bundled handler under Node.js (exit ${code}):\n${output}`);
    }
    return JSON.parse(await Deno.readTextFile(resultsFile));
  } finally {
    await Deno.remove(resultsFile);
  }
}

Deno.test({
  name: "the bundled Lambda handler serves API Gateway v2 events under Node.js",
  ignore: skipWithoutAwsEmulators(),
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "lambda-bundle-" });
    const emulators = await startAwsEmulators();
    let gateway: TestGateway | undefined;
    try {
      // As template.yaml deploys it: the keys' digests, never the keys.
      const digest = new Uint8Array(
        await crypto.subtle.digest("SHA-256", new TextEncoder().encode(API_KEY)),
      );
      const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
      gateway = await startTestGateway("aws", {
        emulators,
        env: { GATEWAY_API_KEY_SHA256: hex },
      });
      await gateway.startWorker();
      const bundle = `${dir}/lambda.mjs`;
      const invoke = (...events: unknown[]) => invokeUnderNode(bundle, gateway!, events);

      await t.step("deno bundle writes one ES module for Node.js", async () => {
        const bytes = await buildLambdaBundle(bundle);
        assert.ok(bytes > 0, "the bundle is empty");
      });

      await t.step("POST /chat with the key queues a job that the worker completes", async () => {
        const [result] = await invoke(httpApiEvent("POST", "/chat", {
          body: { conversation_id: "bundle-1", user_message: "Hi from Node" },
          apiKey: API_KEY,
        }));
        assert.equal(result.statusCode, 202, result.body);
        const ticket = JSON.parse(result.body);
        assert.equal(ticket.status, "queued");
        assert.equal((await gateway!.waitForJob(ticket.job_id)).status, "succeeded");
      });

      await t.step("GET /conversation returns the user and assistant messages", async () => {
        const [result] = await invoke(
          httpApiEvent("GET", "/conversation", {
            query: "conversation_id=bundle-1",
            apiKey: API_KEY,
          }),
        );
        assert.equal(result.statusCode, 200, result.body);
        assert.deepEqual(JSON.parse(result.body).messages, [
          { role: "user", content: "Hi from Node" },
          { role: "assistant", content: "vllm says: Hi from Node" },
        ]);
      });

      await t.step("a bad body gets its 400 in OpenAI's error shape", async () => {
        const [result] = await invoke(
          httpApiEvent("POST", "/chat", { body: { conversation_id: "bundle-2" }, apiKey: API_KEY }),
        );
        assert.equal(result.statusCode, 400, result.body);
        const { error } = JSON.parse(result.body);
        assert.equal(error.type, "invalid_request_error");
        assert.equal(error.param, "user_message");
      });

      await t.step("GET / serves the console page and its files without a key", async () => {
        const [page, script, style] = await invoke(
          httpApiEvent("GET", "/"),
          httpApiEvent("GET", "/console.js"),
          httpApiEvent("GET", "/console.css"),
        );
        assert.equal(page.statusCode, 200, page.body);
        assert.match(page.headers["content-type"], /^text\/html/);
        assert.match(page.headers["content-security-policy"], /script-src 'self'/);
        assert.match(page.body, /<script src="\/console.js" defer><\/script>/);
        assert.match(script.headers["content-type"], /^text\/javascript/);
        assert.match(script.body, /sessionStorage/);
        assert.match(style.headers["content-type"], /^text\/css/);
      });

      await t.step("GET /v1/jobs lists the key's jobs from the index", async () => {
        const [result] = await invoke(httpApiEvent("GET", "/v1/jobs", { apiKey: API_KEY }));
        assert.equal(result.statusCode, 200, result.body);
        const { data } = JSON.parse(result.body);
        assert.deepEqual(
          data.map((job: { conversation_id: string; status: string }) => [
            job.conversation_id,
            job.status,
          ]),
          [["bundle-1", "succeeded"]],
        );
      });

      await t.step("a request without the key gets its 401", async () => {
        const [result] = await invoke(httpApiEvent("POST", "/chat", {
          body: { conversation_id: "bundle-3", user_message: "Hi" },
        }));
        assert.equal(result.statusCode, 401, result.body);
        assert.equal(JSON.parse(result.body).error.code, "missing_api_key");
      });
    } finally {
      await gateway?.stop();
      await emulators.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
