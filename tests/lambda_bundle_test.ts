import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { buildLambdaBundle } from "../scripts/build_lambda.ts";
import { startTestGateway, type TestGateway } from "./support/gateway.ts";
import { skipWithoutAwsEmulators, startAwsEmulators } from "./support/aws_emulators.ts";
import { httpApiEvent } from "./support/lambda_events.ts";
import { slowEchoAnswer } from "./support/stand_in_llm.ts";

const INVOKE_LAMBDA = fileURLToPath(new URL("./support/invoke_lambda.mjs", import.meta.url));
const INVOKE_STREAMING = fileURLToPath(
  new URL("./support/invoke_streaming_lambda.mjs", import.meta.url),
);
const API_KEY = "test-key";

/** What the handler returns to API Gateway. */
interface LambdaResult {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
}

/** What a streaming function URL sends its client. */
interface StreamedResult {
  contentType: string;
  prelude: { statusCode: number; headers: Record<string, string> } | null;
  body: string;
  pieces: { at: number; text: string }[];
}

/** Imports the bundle in a fresh Node.js process and hands it the events, in order. */
function invokeUnderNode(
  bundle: string,
  gateway: TestGateway,
  events: unknown[],
): Promise<LambdaResult[]> {
  return runUnderNode(INVOKE_LAMBDA, bundle, gateway, events);
}

/** Imports the bundle in a fresh Node.js process, as the runtime does, and streams one event. */
function invokeStreamingUnderNode(
  bundle: string,
  gateway: TestGateway,
  event: unknown,
): Promise<StreamedResult> {
  return runUnderNode(INVOKE_STREAMING, bundle, gateway, event);
}

async function runUnderNode<T>(
  invoker: string,
  bundle: string,
  gateway: TestGateway,
  input: unknown,
): Promise<T> {
  const resultsFile = await Deno.makeTempFile({ suffix: ".json" });
  try {
    const env: Record<string, string> = { PATH: Deno.env.get("PATH") ?? "" };
    const home = Deno.env.get("HOME");
    if (home) env.HOME = home;
    for (const [key, value] of Object.entries(gateway.env)) {
      if (value !== undefined) env[key] = value;
    }
    const child = new Deno.Command("node", {
      args: [invoker, bundle, resultsFile],
      env,
      clearEnv: true,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(JSON.stringify(input)));
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
        vllmAnswer: slowEchoAnswer("vllm"),
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

      await t.step(
        "the streaming handler streams a completion through a function URL, piece by piece",
        async () => {
          const event = httpApiEvent("POST", "/v1/chat/completions", {
            body: {
              model: "test-text-model",
              messages: [{ role: "user", content: "one two three four five six" }],
              stream: true,
            },
            apiKey: API_KEY,
            host: "abcdefgh.lambda-url.us-east-1.on.aws",
          });
          const result = await invokeStreamingUnderNode(bundle, gateway!, event);
          assert.equal(result.contentType, "application/vnd.awslambda.http-integration-response");
          assert.equal(result.prelude?.statusCode, 200, result.body);
          assert.match(result.prelude?.headers["content-type"] ?? "", /text\/event-stream/);
          const chunks = result.body.split("\n\n").filter((e) => e.startsWith("data: {"))
            .map((e) => JSON.parse(e.slice("data: ".length)));
          assert.equal(
            chunks.map((c) => c.choices[0]?.delta.content ?? "").join(""),
            "vllm says: one two three four five six",
          );
          assert.match(result.body, /data: \[DONE\]\n\n$/);
          // Written as the reply grew: several pieces of text, not one at the end.
          const withText = result.pieces.filter((p) => /"content":"[^"]+"/.test(p.text));
          assert.ok(withText.length >= 3, `pieces with text: ${withText.length}`);
        },
      );

      await t.step(
        "the streaming URL serves only the OpenAI door: the console and /chat are 404 there",
        async () => {
          for (const [method, path] of [["GET", "/"], ["POST", "/chat"], ["GET", "/v1/jobs"]]) {
            const event = httpApiEvent(method, path, {
              body: method === "POST" ? { conversation_id: "x", user_message: "Hi" } : undefined,
              apiKey: API_KEY,
              host: "abcdefgh.lambda-url.us-east-1.on.aws",
            });
            const result = await invokeStreamingUnderNode(bundle, gateway!, event);
            assert.equal(result.prelude?.statusCode, 404, `${method} ${path}: ${result.body}`);
            assert.match(JSON.parse(result.body).error.message, /use the API URL/);
          }
        },
      );

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
