import assert from "node:assert/strict";
import { durationMs, slowestTests } from "../.ci/slowest_tests.ts";

Deno.test("durationMs() reads each of deno's duration formats", () => {
  assert.equal(durationMs("409µs"), 0.409);
  assert.equal(durationMs("322ms"), 322);
  assert.equal(durationMs("4s"), 4_000);
  assert.equal(durationMs("1m20s"), 80_000);
});

Deno.test("slowestTests() ranks the tests of a run one file at a time, steps left out", () => {
  const output = [
    "running 2 tests from ./tests/a_test.ts",
    "quick test ... \x1b[0m\x1b[32mok\x1b[0m \x1b[0m\x1b[38;5;245m(12ms)\x1b[0m",
    "test with steps ...",
    "  a slow step ... ok (3s)",
    "test with steps ... ok (4s)",
    "running 1 test from ./tests/b_test.ts",
    "failing test ... FAILED (1m2s)",
    "ignored test ... ignored (0ms)",
  ].join("\n");
  assert.deepEqual(slowestTests(output, 3), [
    { file: "./tests/b_test.ts", name: "failing test", ms: 62_000 },
    { file: "./tests/a_test.ts", name: "test with steps", ms: 4_000 },
    { file: "./tests/a_test.ts", name: "quick test", ms: 12 },
  ]);
});

Deno.test("slowestTests() ranks the tests of a --parallel run, steps left out", () => {
  const output = [
    "./tests/a_test.ts => test with steps ... a slow step ... ok (3s)",
    "./tests/b_test.ts => other test [aws] ... ok (2s)",
    "./tests/a_test.ts => test with steps ... ok (5s)",
    "./tests/b_test.ts => test with a failed step ... a step ... FAILED (1s)",
    "./tests/b_test.ts => test with a failed step ... FAILED (due to 1 failed step) (3s)",
    "./tests/a_test.ts => quick test ... ok (1ms)",
  ].join("\n");
  assert.deepEqual(slowestTests(output, 3), [
    { file: "./tests/a_test.ts", name: "test with steps", ms: 5_000 },
    { file: "./tests/b_test.ts", name: "test with a failed step", ms: 3_000 },
    { file: "./tests/b_test.ts", name: "other test [aws]", ms: 2_000 },
  ]);
});
