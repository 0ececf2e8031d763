/**
 * A key's limits at the front door, on both stores: a request past a limit
 * gets a 429 in OpenAI's shape (Anthropic's on /v1/messages), naming the
 * limit and the key, with `Retry-After` and OpenAI's rate-limit headers, and
 * nothing is stored or queued for it; the `openai` SDK's own retry waits the
 * time it is told and then succeeds.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { backendTest, type TestGateway } from "./support/gateway.ts";

const ALICE = "sk-alice-secret";
const BOB = "sk-bob-secret";
const CAROL = "sk-carol-secret";
const KEYS = `alice:${ALICE},bob:${BOB},carol:${CAROL}`;

/**
 * An hour's window: the counts of a test never straddle two windows unless it
 * runs across the turn of an hour, which a test of a second or two almost never does.
 */
const LONG_WINDOW = "3600";

function post(gateway: TestGateway, path: string, key: string, body: unknown): Promise<Response> {
  return Promise.resolve(gateway.app.request(path, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify(body),
  }));
}

function get(gateway: TestGateway, path: string, key: string): Promise<Response> {
  return Promise.resolve(
    gateway.app.request(path, { headers: { authorization: `Bearer ${key}` } }),
  );
}

const chat = (text: string) => ({
  conversation_id: crypto.randomUUID(),
  user_message: text,
  model: "test-text-model",
});

backendTest(
  "a key over its requests per window gets a 429 with the headers, and nothing is stored",
  async (t, start) => {
    const gateway = await start({
      env: {
        GATEWAY_API_KEYS: KEYS,
        GATEWAY_KEY_LIMITS: "alice:rpm=2",
        LIMIT_WINDOW_S: LONG_WINDOW,
      },
    });

    await t.step("each accepted request says what is left of the window", async () => {
      const first = await post(gateway, "/chat", ALICE, chat("one"));
      assert.equal(first.status, 202);
      assert.equal(first.headers.get("x-ratelimit-limit-requests"), "2");
      assert.equal(first.headers.get("x-ratelimit-remaining-requests"), "1");
      assert.match(first.headers.get("x-ratelimit-reset-requests") ?? "", /^(\d+m)?[\d.]+m?s$/);
      const second = await post(gateway, "/chat", ALICE, chat("two"));
      assert.equal(second.status, 202);
      assert.equal(second.headers.get("x-ratelimit-remaining-requests"), "0");
    });

    await t.step(
      "the third is refused in OpenAI's shape, naming the limit and the key",
      async () => {
        const res = await post(gateway, "/chat", ALICE, chat("three"));
        assert.equal(res.status, 429);
        const body = await res.json();
        assert.equal(body.error.type, "requests");
        assert.equal(body.error.code, "rate_limit_exceeded");
        assert.match(body.error.message, /key "alice"/);
        assert.match(body.error.message, /\(rpm\): limit 2, used 2/);
        const seconds = Number(res.headers.get("retry-after"));
        const ms = Number(res.headers.get("retry-after-ms"));
        assert.ok(seconds >= 1 && seconds <= 3600, `Retry-After ${seconds}`);
        assert.ok(ms > 0 && ms <= seconds * 1000, `retry-after-ms ${ms} within Retry-After`);
        assert.equal(res.headers.get("x-ratelimit-remaining-requests"), "0");
      },
    );

    await t.step("nothing was stored or queued for it", async () => {
      const jobs = await gateway.jobRecords();
      assert.deepEqual(jobs.map((j) => j.user_message.content).sort(), ["one", "two"]);
      await gateway.depthBecomes("default", { waiting: 2, in_flight: 0, dead: 0 });
    });

    await t.step(
      "every answer to alice carries the headers; a key without limits gets none",
      async () => {
        const models = await get(gateway, "/v1/models", ALICE);
        assert.equal(models.status, 200);
        assert.equal(models.headers.get("x-ratelimit-remaining-requests"), "0");
        const other = await post(gateway, "/chat", BOB, chat("bob is not limited"));
        assert.equal(other.status, 202);
        assert.equal(other.headers.get("x-ratelimit-limit-requests"), null);
      },
    );

    await t.step("the log names the key and never shows it", () => {
      const logs = gateway.recentLogs(100);
      assert.match(logs, /"key":"alice"/);
      for (const secret of [ALICE, BOB]) assert.ok(!logs.includes(secret), "no key in the log");
    });
  },
);

backendTest("a key over its tokens per window gets a 429 of type tokens", async (_t, start) => {
  const gateway = await start({
    env: { GATEWAY_API_KEYS: KEYS, GATEWAY_KEY_LIMITS: "bob:tpm=40", LIMIT_WINDOW_S: LONG_WINDOW },
  });
  // About a hundred tokens: the window had room for it, and has none for the next.
  const long = await post(gateway, "/chat", BOB, chat("word ".repeat(80)));
  assert.equal(long.status, 202);
  assert.equal(long.headers.get("x-ratelimit-limit-tokens"), "40");
  assert.equal(long.headers.get("x-ratelimit-remaining-tokens"), "0");
  const next = await post(gateway, "/v1/chat/completions", BOB, {
    model: "test-text-model",
    messages: [{ role: "user", content: "short" }],
  });
  assert.equal(next.status, 429);
  const body = await next.json();
  assert.equal(body.error.type, "tokens");
  assert.match(body.error.message, /key "bob" on tokens per window \(tpm\): limit 40/);
  assert.ok(Number(next.headers.get("retry-after")) >= 1);
  assert.equal((await gateway.jobRecords()).length, 1, "the refused completion made no job");
});

backendTest(
  "a key with as many jobs waiting as it may have is refused until one starts",
  async (t, start) => {
    const gateway = await start({
      env: { GATEWAY_API_KEYS: KEYS, GATEWAY_KEY_LIMITS: "carol:waiting=1" },
    });
    const first = await post(gateway, "/chat", CAROL, chat("first"));
    assert.equal(first.status, 202);
    const { job_id: firstId } = await first.json();

    await t.step("the second waits for no place: 429, and nothing stored", async () => {
      const res = await post(gateway, "/chat", CAROL, chat("second"));
      assert.equal(res.status, 429);
      const body = await res.json();
      assert.equal(body.error.code, "rate_limit_exceeded");
      assert.match(body.error.message, /key "carol" on jobs waiting to start \(waiting\): limit 1/);
      assert.equal(res.headers.get("retry-after"), "2");
      assert.equal(res.headers.get("retry-after-ms"), "2000");
      assert.equal((await gateway.jobRecords()).length, 1);
    });

    await t.step("on Anthropic's route the refusal takes Anthropic's shape", async () => {
      const res = await post(gateway, "/v1/messages", CAROL, {
        model: "test-text-model",
        max_tokens: 20,
        messages: [{ role: "user", content: "hi" }],
      });
      assert.equal(res.status, 429);
      const body = await res.json();
      assert.equal(body.type, "error");
      assert.equal(body.error.type, "rate_limit_error");
      assert.match(body.error.message, /key "carol"/);
      assert.equal(res.headers.get("retry-after"), "2");
    });

    await t.step("once its job has started, the key may send another", async () => {
      await gateway.startWorker();
      assert.equal((await gateway.waitForJob(firstId)).status, "succeeded");
      const res = await post(gateway, "/chat", CAROL, chat("third"));
      assert.equal(res.status, 202);
    });
  },
);

backendTest("the openai SDK waits out Retry-After and its retry succeeds", async (_t, start) => {
  const gateway = await start({
    env: { GATEWAY_API_KEYS: KEYS, GATEWAY_KEY_LIMITS: "alice:rpm=1", LIMIT_WINDOW_S: "2" },
  });
  await gateway.startWorker();
  const statuses: number[] = [];
  const openai = new OpenAI({
    baseURL: "http://gateway.test/v1",
    apiKey: ALICE,
    maxRetries: 3,
    timeout: 60_000,
    // In-process, recording what the gateway answered to each attempt.
    fetch: async (input: string | URL | Request, init?: RequestInit) => {
      const res = await gateway.app.request(new Request(input, init));
      statuses.push(res.status);
      return res;
    },
  });
  const ask = (content: string) =>
    openai.chat.completions.create({
      model: "test-text-model",
      messages: [{ role: "user", content }],
    });
  // Both at the start of a window: one is refused, and told to wait for the next.
  await new Promise((r) => setTimeout(r, 2000 - (Date.now() % 2000) + 20));
  const [first, second] = await Promise.all([ask("first"), ask("second")]);
  assert.equal(first.choices[0].message.content, "vllm says: first");
  assert.equal(second.choices[0].message.content, "vllm says: second");
  // Had the SDK retried before the window ended, it would have been refused again.
  assert.deepEqual(statuses.toSorted(), [200, 200, 429], `answers: ${statuses.join(", ")}`);
  assert.equal(statuses.at(-1), 200, "the retry came last, and succeeded");
  assert.equal(gateway.vllm.requests.length, 2, "each completion reached the model once");
});
