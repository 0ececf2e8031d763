/**
 * Lists the slowest tests of a `deno test` run from its output, e.g.
 * `deno run --allow-read .ci/slowest_tests.ts test.log 10`. It reads both of
 * deno's layouts: one file at a time (steps indented under their test) and
 * `--parallel` (each line `./file => test ... step ... ok (1s)`).
 */

/** One finished test and how long it took. */
export interface TestTime {
  file: string;
  name: string;
  ms: number;
}

// deno prints durations as 409µs, 322ms, 4s or 1m20s.
const MS_PER_UNIT: Record<string, number> = { ms: 1, s: 1000, m: 60_000 };

/** Milliseconds of a duration as deno prints it, e.g. "1m20s" is 80000. */
export function durationMs(text: string): number {
  let ms = 0;
  for (const [, value, unit] of text.matchAll(/(\d+(?:\.\d+)?)(µs|ms|s|m)/g)) {
    ms += unit === "µs" ? Number(value) / 1000 : Number(value) * MS_PER_UNIT[unit];
  }
  return ms;
}

/** Every top-level test's time in a run's output (steps are left out: their test counts them). */
export function testTimes(output: string): TestTime[] {
  const times: TestTime[] = [];
  let file = "";
  // deno colours its output on a terminal; a log saved by `tee` may still hold the codes.
  // deno-lint-ignore no-control-regex
  const plain = output.replace(/\x1b\[[0-9;]*m/g, "");
  for (const line of plain.split("\n")) {
    const running = /^running \d+ tests? from (\S+)/.exec(line);
    if (running) {
      file = running[1];
      continue;
    }
    const result =
      /^(?:(\S+) => )?(\S.*) \.\.\. (?:ok|FAILED(?: \(due to [^)]*\))?|ignored) \(([^)]+)\)$/
        .exec(line);
    // A step's line names its test first ("test ... step ... ok") or is indented.
    if (!result || result[2].includes(" ... ")) continue;
    times.push({ file: result[1] ?? file, name: result[2], ms: durationMs(result[3]) });
  }
  return times;
}

/** The `count` slowest tests, slowest first. */
export function slowestTests(output: string, count = 10): TestTime[] {
  return testTimes(output).sort((a, b) => b.ms - a.ms).slice(0, count);
}

function formatMs(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(0)} s` : `${ms.toFixed(0)} ms`;
}

if (import.meta.main) {
  const [path, count = "10"] = Deno.args;
  if (!path) throw new TypeError("Cannot list the slowest tests: give the run's output file");
  for (const test of slowestTests(await Deno.readTextFile(path), Number(count))) {
    console.log(`${formatMs(test.ms).padStart(6)}  ${test.file}  ${test.name}`);
  }
}
