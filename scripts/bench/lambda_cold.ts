/** The Lambda bundle's size and how long a fresh Node.js process takes to import it. */
import { buildLambdaBundle } from "../build_lambda.ts";

/** What was measured, or why it was skipped. */
export type LambdaColdResult =
  | { bundleBytes: number; importMs: number[] }
  | { skipped: string };

/** Times the import in a child process, so nothing is cached; `performance.now()` runs inside Node. */
const IMPORT_SCRIPT = `
const { pathToFileURL } = await import("node:url");
const url = pathToFileURL(process.argv[1]).href;
const started = performance.now();
await import(url);
console.log(performance.now() - started);
`;

/** Builds the bundle in a temporary directory and imports it `runs` times, each in a new `node`. */
export async function measureLambdaCold(runs: number): Promise<LambdaColdResult> {
  const missing = await nodeMissing();
  if (missing) return { skipped: missing };
  const dir = await Deno.makeTempDir({ prefix: "gateway-bench-lambda-" });
  try {
    const bundle = `${dir}/lambda.mjs`;
    const bundleBytes = await buildLambdaBundle(bundle);
    const importMs: number[] = [];
    for (let i = 0; i < runs; i++) importMs.push(await importOnce(bundle));
    return { bundleBytes, importMs };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function importOnce(bundle: string): Promise<number> {
  // Only PATH and HOME: with no gateway settings the bundle's lazy set-up has nothing to do.
  const env: Record<string, string> = { PATH: Deno.env.get("PATH") ?? "" };
  const home = Deno.env.get("HOME");
  if (home) env.HOME = home;
  const { code, stdout, stderr } = await new Deno.Command("node", {
    args: ["--input-type=module", "-e", IMPORT_SCRIPT, bundle],
    env,
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(stdout).trim();
  const ms = Number(out);
  if (code !== 0 || !Number.isFinite(ms)) {
    throw new Error(
      `Cannot import the Lambda bundle under Node.js: exit ${code}: ${
        new TextDecoder().decode(stderr).trim() || out
      }`,
    );
  }
  return ms;
}

async function nodeMissing(): Promise<string | undefined> {
  try {
    const { success } = await new Deno.Command("node", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).output();
    return success ? undefined : "`node --version` failed";
  } catch (err) {
    return `node is not on PATH (${(err as Error).message})`;
  }
}
