/**
 * The request schemas' shared parts, on zod: arrays bounded before their
 * items are read, ids and image URLs with the reason they are refused, and
 * zod's issues named as the fields a client sent.
 */
import assert from "node:assert/strict";
import * as z from "zod/mini";
import {
  cappedArray,
  conversationIdSchema,
  imageUrlSchema,
  MAX_URL_CHARS,
} from "../lib/http/request_fields.ts";
import { problemCheck, zodProblems } from "../lib/http/validation.ts";

/** The parsed value, or the problems as a client would see them. */
function parse(schema: z.ZodMiniType, value: unknown) {
  const result = schema.safeParse(value, { reportInput: true });
  return result.success ? { data: result.data } : { problems: zodProblems(result.error.issues) };
}

/** The problems of a value under `field` of an object, so they have a path. */
function problemsAt(schema: z.ZodMiniType, value: unknown) {
  return parse(z.object({ field: schema }), { field: value }).problems;
}

Deno.test("cappedArray() refuses an over-long array with one problem, before reading any item", () => {
  let itemsRead = 0;
  const counted = z.pipe(
    z.unknown(),
    z.transform((value: unknown) => {
      itemsRead++;
      return value;
    }),
  );
  const schema = cappedArray(counted, { max: 3, items: "things" });
  assert.deepEqual(problemsAt(schema, new Array(100_000).fill({})), [
    { param: "field", message: "must hold at most 3 things, got 100000" },
  ]);
  assert.equal(itemsRead, 0, "no item was parsed");
  assert.deepEqual(parse(schema, [1, 2, 3]), { data: [1, 2, 3] });
  assert.equal(itemsRead, 3);
});

Deno.test("cappedArray() names a bad item by its index, and every bad item", () => {
  const schema = cappedArray(z.string({ error: "must be a string" }), { max: 5, items: "names" });
  assert.deepEqual(problemsAt(schema, ["a", 1, "b", null]), [
    { param: "field[1]", message: "must be a string" },
    { param: "field[3]", message: "must be a string" },
  ]);
});

Deno.test("cappedArray() says a value is missing, not an array, or holds too few items", () => {
  const schema = cappedArray(z.string(), {
    max: 2,
    items: "names",
    tooFew: { min: 1, problem: "must hold at least one name" },
  });
  assert.deepEqual(parse(z.object({ field: schema }), {}).problems, [
    { param: "field", message: "is required" },
  ]);
  for (const notArray of ["abc", "a string longer than two", { 0: "a" }, null, 3]) {
    assert.deepEqual(
      problemsAt(schema, notArray),
      [{ param: "field", message: "must be an array of names" }],
      `${JSON.stringify(notArray)} gets one problem, its length unread`,
    );
  }
  assert.deepEqual(problemsAt(schema, []), [
    { param: "field", message: "must hold at least one name" },
  ]);
  const images = cappedArray(z.string(), { max: 2, items: "images", notArray: "must be a list" });
  assert.deepEqual(problemsAt(images, "x"), [{ param: "field", message: "must be a list" }]);
});

Deno.test("conversationIdSchema trims the id, then refuses it empty, long, with controls or a lone surrogate", () => {
  assert.deepEqual(parse(conversationIdSchema, "  chat-1\n"), { data: "chat-1" });
  assert.deepEqual(parse(conversationIdSchema, "é 😀 ok"), { data: "é 😀 ok" });
  const cases: [unknown, string][] = [
    [7, "must be a string"],
    ["   ", "must not be empty"],
    ["x".repeat(257), "must be at most 256 characters"],
    ["a\u0000b", "must not hold control characters"],
    ["a\ud800b", "must be valid Unicode text (it holds a lone surrogate)"],
  ];
  for (const [id, message] of cases) {
    assert.deepEqual(problemsAt(conversationIdSchema, id), [{ param: "field", message }]);
  }
});

Deno.test("imageUrlSchema takes http(s) and base64 data: URLs as sent, and says why it refuses others", () => {
  for (const url of ["https://example.com/a.png", "data:image/png;base64,iVBORw0KGgo="]) {
    assert.deepEqual(parse(imageUrlSchema, url), { data: url });
  }
  const cases: [unknown, RegExp][] = [
    [42, /^must be a string$/],
    ["data:image/png,rawbytes", /must be base64/],
    ["data:image/png;base64,a-b_", /does not decode/],
    ["ftp://example.com/a.png", /use http, https or data:/],
    [`https://example.com/${"a".repeat(MAX_URL_CHARS)}`, /must be at most 2048 characters/],
  ];
  for (const [url, message] of cases) {
    const problems = problemsAt(imageUrlSchema, url);
    assert.equal(problems?.length, 1, String(url));
    assert.equal(problems[0].param, "field");
    assert.match(problems[0].message, message);
  }
  assert.equal(problemsAt(imageUrlSchema, "")?.[0].message, "must not be empty");
});

Deno.test("problemCheck() reports the problem it is told, and stops the checks after it", () => {
  const schema = z.string().check(
    problemCheck((s: string) => s.startsWith("x") ? undefined : `must start with x, not ${s[0]}`),
    z.refine(() => false, "never reached after a problem"),
  );
  assert.deepEqual(problemsAt(schema, "abc"), [
    { param: "field", message: "must start with x, not a" },
  ]);
  assert.deepEqual(problemsAt(schema, "xyz"), [
    { param: "field", message: "never reached after a problem" },
  ]);
});

Deno.test("zodProblems() names nested fields like messages[2].content[0].text, and the body at the root", () => {
  const schema = z.object({
    messages: z.array(z.object({
      content: z.array(z.object({ text: z.string({ error: "must be a string" }) })),
    })),
  }, { error: "must be a JSON object" });
  const body = { messages: [{ content: [] }, { content: [] }, { content: [{ text: 1 }, {}] }] };
  assert.deepEqual(parse(schema, body).problems, [
    { param: "messages[2].content[0].text", message: "must be a string" },
    { param: "messages[2].content[1].text", message: "is required" },
  ]);
  assert.deepEqual(parse(schema, "hi").problems, [
    { param: "body", message: "must be a JSON object" },
  ]);
});
