/**
 * What one request may hold: a body within MAX_BODY_BYTES can still carry
 * thousands of items, so their number is bounded, and a 400 lists only a
 * handful of problems however many there are.
 */
import assert from "node:assert/strict";
import { ApiError, type ErrorBody, type FieldProblem } from "../lib/http/errors.ts";
import { parseCompletionRequest } from "../lib/http/completion_request.ts";
import { findTooDeep, jsonDepthProblem } from "../lib/core/json_depth.ts";
import { backendTest, type TestGateway } from "./support/gateway.ts";

function postCompletion(gateway: TestGateway, body: string) {
  return gateway.app.request("/v1/chat/completions", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
  });
}

backendTest(
  "a 1 MB body of 340,000 empty messages gets a small 400 at once, and nothing is queued",
  async (t, start) => {
    const gateway = await start();

    await t.step("more messages than allowed: one problem, without looking at each", async () => {
      const body = `{"messages":[${new Array(340_000).fill("{}").join(",")}]}`;
      assert.ok(body.length < gateway.config.maxBodyBytes, "the body is within MAX_BODY_BYTES");
      const res = await postCompletion(gateway, body);
      assert.equal(res.status, 400);
      const text = await res.text();
      assert.ok(text.length < 2000, `the error is ${text.length} bytes`);
      const { error } = JSON.parse(text) as ErrorBody;
      assert.equal(error.param, "messages");
      assert.match(error.message, /must hold at most 5000 messages, got 340000/);
    });

    await t.step("thousands of bad messages: ten problems listed, and how many more", async () => {
      const body = `{"messages":[${new Array(4000).fill("{}").join(",")}]}`;
      const res = await postCompletion(gateway, body);
      assert.equal(res.status, 400);
      const text = await res.text();
      assert.ok(text.length < 4000, `the error is ${text.length} bytes`);
      const { error } = JSON.parse(text) as ErrorBody;
      assert.equal(error.details?.length, 10);
      assert.deepEqual(error.details?.slice(0, 2).map((d) => d.param), [
        "messages[0].role",
        "messages[0].content",
      ]);
      assert.match(error.message, /; and 7990 more problems$/);
    });

    assert.deepEqual(await gateway.jobRecords(), [], "no job record was written");
    assert.equal((await gateway.depth("default")).waiting, 0, "nothing was queued");
  },
);

/** The problems a rejected body yields; fails the test if the body is accepted. */
function problemsOf(body: unknown): FieldProblem[] {
  try {
    parseCompletionRequest(body);
  } catch (err) {
    assert.ok(err instanceof ApiError && err.status === 400, `a 400, not ${err}`);
    return err.details ?? [];
  }
  assert.fail("the body was accepted");
}

const user = (content: unknown) => ({ role: "user", content });
const image = (url: string) => ({ type: "image_url", image_url: { url } });

Deno.test("parseCompletionRequest() bounds parts, images and string lengths", async (t) => {
  await t.step("at most 64 content parts in a message", () => {
    const parts = Array.from({ length: 65 }, () => ({ type: "text", text: "a" }));
    assert.deepEqual(problemsOf({ messages: [user(parts)] }), [
      { param: "messages[0].content", message: "must hold at most 64 content parts, got 65" },
    ]);
  });

  await t.step("at most 8 images in the message answered, 32 in the whole request", () => {
    const images = (n: number) =>
      Array.from({ length: n }, (_, i) => image(`https://a.example/${i}`));
    assert.deepEqual(problemsOf({ messages: [user(images(9))] }), [
      { param: "messages[0].content", message: "must hold at most 8 images, got 9" },
    ]);
    const history = Array.from({ length: 5 }, () => user(images(7)));
    assert.deepEqual(problemsOf({ messages: [...history, user("and these?")] }), [
      { param: "messages", message: "must hold at most 32 images in all, got 35" },
    ]);
    const fine = Array.from({ length: 4 }, () => user(images(8)));
    assert.equal(parseCompletionRequest({ messages: fine }).messages.length, 4);
  });

  await t.step("long strings are refused by name", () => {
    const problems = problemsOf({
      model: "m".repeat(257),
      messages: [{ role: "user", name: "n".repeat(257), content: "x".repeat(1_000_001) }],
      stop: ["s".repeat(257)],
    });
    assert.deepEqual(problems.map((p) => p.param), [
      "model",
      "messages[0].content",
      "messages[0].name",
      "stop[0]",
    ]);
  });
});

Deno.test("jsonDepthProblem() measures nesting on the text, strings and escapes aside", async (t) => {
  await t.step("at the limit is fine; one past it is refused, and findTooDeep() says where", () => {
    assert.equal(jsonDepthProblem(`${"[".repeat(64)}${"]".repeat(64)}`), undefined);
    assert.equal(
      jsonDepthProblem(`${"[".repeat(65)}${"]".repeat(65)}`),
      "nested more than 64 levels deep (arrays and objects)",
    );
    assert.equal(findTooDeep(`${"[".repeat(65)}${"]".repeat(65)}`)?.path, "[0][0][0][0][0][0]…");
    assert.equal(findTooDeep("[[[]]]", 2)?.path, "[0][0]");
    assert.equal(findTooDeep("{}", 0)?.path, "body");
  });

  await t.step("the path follows keys and indexes", () => {
    const text = JSON.stringify({ a: 1, b: [0, { c: [[["x"]]] }] });
    assert.equal(findTooDeep(text, 4)?.path, "b[1].c[0]");
    assert.equal(findTooDeep(text, 6), undefined);
  });

  await t.step("brackets and quotes inside strings do not count", () => {
    const text = JSON.stringify({ t: '[[[[{{{{ \\" [[[[', u: ["\\\\", "]]]]"] });
    assert.equal(jsonDepthProblem(text, 2), undefined);
    assert.equal(findTooDeep(`{"k\\"[[":[[1]]}`, 2)?.path, 'k\\"[[[0]');
  });

  await t.step("a million levels are measured without recursion, as far as the limit", () => {
    const text = "[".repeat(1_000_000) + "]".repeat(1_000_000);
    assert.equal(findTooDeep(text)?.path, "[0][0][0][0][0][0]…");
  });
});
