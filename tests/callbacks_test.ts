import assert from "node:assert/strict";
import {
  type CallbackOptions,
  type CallbackResult,
  deliverCallback,
} from "../lib/worker/callbacks.ts";
import { within } from "./support/wait.ts";

const JOB = { id: "job-1", status: "succeeded", output: { text: "Hello, wörld" } };

interface Received {
  path: string;
  body: string;
  headers: Headers;
}

/** A callback receiver on loopback whose answer depends on the path; it records every request. */
function startReceiver(onRequest?: (path: string) => void) {
  const received: Received[] = [];
  const release = Promise.withResolvers<void>();
  let flakyCalls = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const path = new URL(req.url).pathname;
    received.push({ path, body: await req.text(), headers: req.headers });
    onRequest?.(path);
    switch (path) {
      case "/ok":
        return new Response("thanks");
      case "/flaky":
        return new Response(null, { status: ++flakyCalls <= 2 ? 503 : 200 });
      case "/throttled":
        return new Response(null, { status: received.length === 1 ? 429 : 204 });
      case "/broken":
        return new Response("oops", { status: 500 });
      case "/bad":
        return new Response("no", { status: 400 });
      case "/moved":
        return Response.redirect(new URL("/ok", req.url), 302);
      case "/slow":
        // Held until the test stops, so no handler outlives the server.
        await release.promise;
        return new Response("late");
      default:
        return new Response(null, { status: 404 });
    }
  });
  const port = server.addr.port;
  return {
    port,
    url: (path: string) => `http://127.0.0.1:${port}${path}`,
    received,
    count: (path: string) => received.filter((r) => r.path === path).length,
    async [Symbol.asyncDispose]() {
      release.resolve();
      await server.shutdown();
    },
  };
}

function options(port: number | undefined, extra: Partial<CallbackOptions> = {}): CallbackOptions {
  return {
    attempts: 3,
    timeoutMs: 250,
    backoffMs: 10,
    allowedHosts: port === undefined ? [] : [`127.0.0.1:${port}`],
    ...extra,
  };
}

function assertFailed(
  result: CallbackResult,
): asserts result is Extract<CallbackResult, { delivered: false }> {
  assert.equal(result.delivered, false, `expected a failure, got ${JSON.stringify(result)}`);
}

Deno.test("deliverCallback() delivers on the first try with the job as JSON", async () => {
  await using receiver = startReceiver();
  const result = await deliverCallback(receiver.url("/ok"), JOB, options(receiver.port));
  assert.deepEqual(result, { delivered: true, attempts: 1, status: 200 });
  assert.equal(receiver.received.length, 1);
  const [request] = receiver.received;
  assert.deepEqual(JSON.parse(request.body), JOB);
  assert.equal(request.headers.get("content-type"), "application/json");
  assert.match(request.headers.get("user-agent") ?? "", /^llm-gateway-callback\//);
});

Deno.test("deliverCallback() retries a 503 twice and delivers on the third attempt", async () => {
  await using receiver = startReceiver();
  const result = await deliverCallback(receiver.url("/flaky"), JOB, options(receiver.port));
  assert.deepEqual(result, { delivered: true, attempts: 3, status: 200 });
  assert.equal(receiver.count("/flaky"), 3);
  assert.ok(receiver.received.every((r) => r.body === JSON.stringify(JOB)));
});

Deno.test("deliverCallback() retries a 429", async () => {
  await using receiver = startReceiver();
  const result = await deliverCallback(receiver.url("/throttled"), JOB, options(receiver.port));
  assert.deepEqual(result, { delivered: true, attempts: 2, status: 204 });
});

Deno.test("deliverCallback() gives up after the allowed attempts", async () => {
  await using receiver = startReceiver();
  const url = receiver.url("/broken");
  const result = await deliverCallback(url, JOB, options(receiver.port, { attempts: 4 }));
  assertFailed(result);
  assert.equal(result.attempts, 4);
  assert.equal(receiver.count("/broken"), 4);
  assert.equal(result.error, `Callback to ${url} failed after 4 attempts: answered 500`);
});

Deno.test("deliverCallback() does not retry a 400", async () => {
  await using receiver = startReceiver();
  const result = await deliverCallback(receiver.url("/bad"), JOB, options(receiver.port));
  assertFailed(result);
  assert.equal(result.attempts, 1);
  assert.equal(receiver.count("/bad"), 1);
  assert.match(result.error, /failed after 1 attempt: answered 400$/);
});

Deno.test("deliverCallback() does not follow a redirect", async () => {
  await using receiver = startReceiver();
  const result = await deliverCallback(receiver.url("/moved"), JOB, options(receiver.port));
  assertFailed(result);
  assert.equal(result.attempts, 1);
  assert.match(result.error, /answered 302, a redirect, which is not followed/);
  assert.equal(receiver.count("/moved"), 1);
  assert.equal(receiver.count("/ok"), 0, "the redirect target was never contacted");
});

Deno.test("deliverCallback() retries a receiver that answers too slowly, then gives up", async () => {
  await using receiver = startReceiver();
  const result = await deliverCallback(
    receiver.url("/slow"),
    JOB,
    options(receiver.port, { attempts: 2, timeoutMs: 200 }),
  );
  assertFailed(result);
  assert.equal(result.attempts, 2);
  assert.equal(receiver.count("/slow"), 2);
  assert.match(result.error, /failed after 2 attempts: no answer within 0\.2 s$/);
});

Deno.test("deliverCallback() refuses a loopback receiver without an allowed host, unsent", async () => {
  await using receiver = startReceiver();
  const result = await deliverCallback(receiver.url("/ok"), JOB, options(undefined));
  assertFailed(result);
  assert.equal(result.attempts, 0);
  assert.match(result.error, /refused: 127\.0\.0\.1 is not a public address \(loopback\)$/);
  assert.equal(receiver.received.length, 0);
});

Deno.test("deliverCallback() refuses a host that resolves to the metadata address", async () => {
  const asked: string[] = [];
  const resolve = (hostname: string) => {
    asked.push(hostname);
    return Promise.resolve(["169.254.169.254"]);
  };
  const result = await deliverCallback(
    "https://hooks.example/done",
    JOB,
    options(undefined, { resolve }),
  );
  assertFailed(result);
  assert.equal(result.attempts, 0);
  assert.deepEqual(asked, ["hooks.example"]);
  assert.match(result.error, /^Callback to https:\/\/hooks\.example\/done refused: /);
  assert.match(result.error, /169\.254\.169\.254, which is not a public address \(link-local\)/);
});

Deno.test("deliverCallback() never shows a URL's credentials and query in its error", async () => {
  await using receiver = startReceiver();
  const url = `http://user:hunter2@127.0.0.1:${receiver.port}/ok?token=s3cret`;
  const result = await deliverCallback(url, JOB, options(receiver.port));
  assertFailed(result);
  assert.equal(result.attempts, 0);
  assert.equal(
    result.error,
    `Callback to http://127.0.0.1:${receiver.port}/ok?… refused: ` +
      "URLs with a user name or password are not accepted",
  );
  assert.equal(receiver.received.length, 0);
});

Deno.test("deliverCallback() refuses a URL that is not http or https", async (t) => {
  for (const url of ["file:///etc/passwd", "not a url", "ftp://files.example/x"]) {
    await t.step(url, async () => {
      const result = await deliverCallback(url, JOB, options(undefined));
      assertFailed(result);
      assert.equal(result.attempts, 0);
      assert.match(result.error, /refused: (scheme "\w+:" is not accepted|not a valid URL)/);
    });
  }
});

Deno.test("deliverCallback() sends no payload without a JSON form, nor with options that would retry forever", async () => {
  const circular: Record<string, unknown> = {};
  circular.self = circular;
  const url = "https://hooks.example/done";
  for (
    const [payload, extra] of [
      [circular, {}],
      [undefined, {}],
      [JOB, { attempts: Infinity }],
      [JOB, { attempts: 0 }],
      [JOB, { timeoutMs: -1 }],
    ] as const
  ) {
    const result = await deliverCallback(url, payload, options(undefined, extra));
    assertFailed(result);
    assert.equal(result.attempts, 0);
    assert.match(result.error, /^Callback to https:\/\/hooks\.example\/done not sent: /);
  }
});

Deno.test("deliverCallback() stops retrying early on an abort", async (t) => {
  await t.step("an abort during an attempt ends delivery without waiting to retry", async () => {
    const controller = new AbortController();
    await using receiver = startReceiver(() => controller.abort());
    // A backoff of ten minutes: waiting it out would miss the deadline by far.
    const result = await within(
      deliverCallback(
        receiver.url("/broken"),
        JOB,
        options(receiver.port, { attempts: 5, backoffMs: 600_000, signal: controller.signal }),
      ),
      "delivery to end at the abort, not after a backoff",
      60_000,
    );
    assertFailed(result);
    assert.equal(result.attempts, 1);
    assert.equal(receiver.count("/broken"), 1);
    assert.match(result.error, /failed after 1 attempt: aborted/);
  });

  await t.step("an abort during the backoff cuts the wait short", async () => {
    const controller = new AbortController();
    await using receiver = startReceiver(() => setTimeout(() => controller.abort(), 100));
    const result = await within(
      deliverCallback(
        receiver.url("/broken"),
        JOB,
        options(receiver.port, { attempts: 3, backoffMs: 600_000, signal: controller.signal }),
      ),
      "the abort to cut a ten-minute backoff short",
      60_000,
    );
    assertFailed(result);
    assert.equal(result.attempts, 1);
    assert.match(result.error, /failed after 1 attempt: aborted \(last attempt: answered 500\)$/);
  });

  await t.step("an already aborted signal sends nothing", async () => {
    await using receiver = startReceiver();
    const result = await deliverCallback(
      receiver.url("/ok"),
      JOB,
      options(receiver.port, { signal: AbortSignal.abort() }),
    );
    assertFailed(result);
    assert.equal(result.attempts, 0);
    assert.equal(receiver.received.length, 0);
  });
});

Deno.test("deliverCallback() retries a receiver that refuses connections, and hides its query", async () => {
  const closed = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response(),
  );
  const port = closed.addr.port;
  await closed.shutdown();
  const url = `http://127.0.0.1:${port}/hook?token=s3cret`;
  const result = await deliverCallback(url, JOB, options(port, { attempts: 2 }));
  assertFailed(result);
  assert.equal(result.attempts, 2);
  assert.match(result.error, /failed after 2 attempts: cannot connect: /);
  assert.ok(!result.error.includes("s3cret"), result.error);
});
