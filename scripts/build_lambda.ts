/**
 * Bundles the Lambda entry point into one ES module for the Node.js 22.x
 * runtime (`deno task build` writes `dist/lambda.mjs`, handler `lambda.handler`).
 * The AWS SDK is bundled too, not left to the runtime's copy: the bundle then
 * runs the SDK versions we test, and it imports faster than from node_modules.
 */

const ROOT = new URL("../", import.meta.url);

/**
 * Writes the bundle of `entry` (default the Lambda entry point) to `outFile`,
 * both relative to the project root, and returns its size in bytes.
 */
export async function buildLambdaBundle(
  outFile: string,
  entry = "lib/http/lambda.ts",
): Promise<number> {
  // --quiet hides the "experimental" banner; errors are still printed. Not
  // --keep-names: with it `deno bundle` leaves out its `createRequire` banner,
  // and Node.js then fails on the SDK's `require("node:crypto")`.
  const { code, stderr } = await new Deno.Command("deno", {
    args: [
      "bundle",
      "--quiet",
      "--platform",
      "node",
      "--minify",
      "--output",
      outFile,
      entry,
    ],
    cwd: ROOT,
    stdout: "null",
    stderr: "piped",
  }).output();
  if (code !== 0) {
    throw new Error(`Cannot bundle ${entry}: ${new TextDecoder().decode(stderr).trim()}`);
  }
  return (await Deno.stat(new URL(outFile, ROOT))).size;
}

if (import.meta.main) {
  const outFile = "dist/lambda.mjs";
  const bytes = await buildLambdaBundle(outFile);
  console.log(`Wrote ${outFile} (${(bytes / 1e6).toFixed(2)} MB), handler lambda.handler`);
}
