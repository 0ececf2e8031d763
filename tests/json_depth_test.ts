/** jsonDepthProblem() refuses deeply nested JSON from its raw text, before anything parses it. */
import assert from "node:assert/strict";
import { jsonDepthProblem, MAX_JSON_DEPTH } from "../lib/core/json_depth.ts";

const nested = (depth: number, open = "[", close = "]") => open.repeat(depth) + close.repeat(depth);

Deno.test("jsonDepthProblem() accepts JSON nested as deep as allowed", () => {
  const text = nested(MAX_JSON_DEPTH);
  assert.equal(jsonDepthProblem(text), undefined);
  assert.doesNotThrow(() => JSON.parse(text));
  assert.equal(jsonDepthProblem('{"a":[{"b":{"c":[1,2,{"d":"x"}]}}]}', 6), undefined);
  assert.equal(jsonDepthProblem('"just a string"'), undefined);
  assert.equal(jsonDepthProblem(""), undefined);
});

Deno.test("jsonDepthProblem() refuses one level deeper, in arrays, objects or both, and names the limit", () => {
  assert.equal(
    jsonDepthProblem(nested(MAX_JSON_DEPTH + 1)),
    "nested more than 64 levels deep (arrays and objects)",
  );
  const objects = '{"a":'.repeat(65) + "1" + "}".repeat(65);
  assert.match(jsonDepthProblem(objects) ?? "", /more than 64 levels/);
  assert.match(jsonDepthProblem('{"a":[{"b":[1]}]}', 3) ?? "", /more than 3 levels/);
  assert.equal(jsonDepthProblem('{"a":[{"b":[1]}]}', 4), undefined);
});

Deno.test("jsonDepthProblem() does not count brackets inside strings, escaped quotes included", () => {
  const text = JSON.stringify({ text: "[".repeat(1000) + '\\" {{{ "' + "{".repeat(1000) });
  assert.equal(jsonDepthProblem(text, 1), undefined);
  assert.equal(
    jsonDepthProblem(JSON.stringify(["\\", ["x"]]), 1),
    "nested more than 1 levels deep (arrays and objects)",
  );
});

Deno.test("jsonDepthProblem() refuses a million levels, which the parser would take whole", () => {
  const text = `{"messages":[],"extra":${nested(1_000_000)}}`;
  assert.match(jsonDepthProblem(text) ?? "", /more than 64 levels/);
});
