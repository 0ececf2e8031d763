/**
 * Bundles the Lambda entry point for the Node.js 22.x runtime: `deno task
 * build` writes `dist/lambda.mjs` (handler `lambda.handler`) and the chunks
 * it loads. The AWS SDK's clients (lib/storage/aws/clients.ts) are bundled
 * too, not left to the runtime's copy: the bundle then runs the SDK version we
 * test, and it imports faster than from node_modules. What is imported only
 * when needed (the S3 client, the SDK's rarer credential sources) goes to
 * chunks of its own, loaded then, and trimmed to what is used, as the rest is.
 * The bench bundles its floor (Hono and the same clients) with the same function.
 */

import { fileURLToPath } from "node:url";

const ROOT = new URL("../", import.meta.url);

/**
 * Writes the bundle of `entry` (default the Lambda entry point) to `outFile`,
 * both relative to the project root, its chunks beside it, and returns the
 * size of all its files in bytes. The directory is the bundle's own: chunks
 * of an earlier build there are removed. The console's files go beside it
 * (`console/`), where the front door reads them.
 */
export async function buildLambdaBundle(
  outFile: string,
  entry = "lib/http/lambda.ts",
): Promise<number> {
  const target = new URL(outFile, ROOT);
  const outDir = new URL("./", target);
  await Deno.mkdir(outDir, { recursive: true });
  const built = await Deno.makeTempDir({ dir: fileURLToPath(outDir), prefix: ".bundle-" });
  try {
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
        "--code-splitting",
        "--outdir",
        built,
        entry,
      ],
      cwd: ROOT,
      stdout: "null",
      stderr: "piped",
    }).output();
    if (code !== 0) {
      throw new Error(`Cannot bundle ${entry}: ${new TextDecoder().decode(stderr).trim()}`);
    }
    await removeChunks(outDir);
    const entryName = entry.split("/").pop()!.replace(/\.ts$/, ".js");
    let bytes = 0;
    for await (const file of Deno.readDir(built)) {
      const to = file.name === entryName ? target : new URL(file.name, outDir);
      await Deno.rename(`${built}/${file.name}`, to);
      await ensureRequire(to);
      bytes += (await Deno.stat(to)).size;
    }
    // The chunks are ES modules named `.js`.
    await Deno.writeTextFile(new URL("package.json", outDir), '{ "type": "module" }\n');
    await copyConsole(new URL("console/", outDir));
    return bytes;
  } finally {
    await Deno.remove(built, { recursive: true });
  }
}

/** Removes the chunks (`*.js`) an earlier build left in `dir`. */
async function removeChunks(dir: URL): Promise<void> {
  for await (const file of Deno.readDir(dir)) {
    if (file.isFile && file.name.endsWith(".js")) await Deno.remove(new URL(file.name, dir));
  }
}

/** Copies the console's files (lib/http/console/) into `into`. */
async function copyConsole(into: URL): Promise<void> {
  const from = new URL("lib/http/console/", ROOT);
  await Deno.mkdir(into, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    if (entry.isFile) await Deno.copyFile(new URL(entry.name, from), new URL(entry.name, into));
  }
}

/**
 * CommonJS code in a bundle (some of the SDK's) calls
 * `require("node:crypto")` through esbuild's shim, which needs a `require` in
 * scope. `deno bundle` (2.9.6) swaps the shim for a `createRequire` banner,
 * but only when the minifier names the shim with word characters: named `$t`,
 * say, it is left as it is and Node.js fails with "Dynamic require of
 * node:crypto is not supported". Then the bundle gets a `require` of its own,
 * which the shim finds.
 */
async function ensureRequire(file: URL): Promise<void> {
  const code = await Deno.readTextFile(file);
  // The shim's message: the file has the shim, and no banner gives it a `require`.
  if (!code.includes("Dynamic require of") || code.includes("__deno_internal_createRequire")) {
    return;
  }
  await Deno.writeTextFile(
    file,
    'import{createRequire as __gatewayCreateRequire}from"node:module";' +
      "const require=__gatewayCreateRequire(import.meta.url);\n" + code,
  );
}

if (import.meta.main) {
  const outFile = "dist/lambda.mjs";
  const bytes = await buildLambdaBundle(outFile);
  console.log(
    `Wrote ${outFile} and its chunks (${
      (bytes / 1e6).toFixed(2)
    } MB), handler lambda.handler, and the console's files in dist/console/`,
  );
}
