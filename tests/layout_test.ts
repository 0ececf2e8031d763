/**
 * The tree tells the architecture: the front door (lib/http, a Lambda in the
 * cloud) and the worker (lib/worker, on the user's machine) share only what is
 * in lib/core, lib/storage and lib/outbound. This reads the real module graph
 * with `deno info --json` and fails on any import that crosses a line.
 */
import assert from "node:assert/strict";
import { PROJECT_DIR } from "./support/child_deno.ts";

/** One module of lib/ and the lib/ modules it imports directly. */
interface Edge {
  from: string;
  to: string;
}

/** Which folders of lib/ each folder may not import. */
const FORBIDDEN: Record<string, string[]> = {
  "http": ["worker"],
  "worker": ["http"],
  "core": ["http", "worker", "storage", "outbound"],
  "outbound": ["http", "worker", "storage"],
  "storage": ["http", "worker", "outbound"],
};

/** The module graph from `entry`, as `deno info --json` gives it. */
interface ModuleGraph {
  roots: string[];
  modules: {
    specifier: string;
    dependencies?: {
      code?: { specifier: string };
      type?: { specifier: string };
      isDynamic?: boolean;
    }[];
  }[];
}

async function moduleGraph(entry: string): Promise<ModuleGraph> {
  const output = await new Deno.Command("deno", {
    args: ["info", "--json", entry],
    cwd: PROJECT_DIR,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(output.success, new TextDecoder().decode(output.stderr));
  return JSON.parse(new TextDecoder().decode(output.stdout));
}

async function libFiles(dir = `${PROJECT_DIR}/lib`): Promise<string[]> {
  const files: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) files.push(...await libFiles(path));
    else if (entry.name.endsWith(".ts")) files.push(path);
  }
  return files;
}

/**
 * Every import of a module of lib/, as `deno info --json` resolves it: `to` is
 * the path of another module of lib/, or the resolved specifier of anything
 * else (`npm:@aws-sdk/client-sqs@3.1169.0`).
 */
async function libDependencies(): Promise<Edge[]> {
  const root = await Deno.makeTempFile({ dir: PROJECT_DIR, prefix: ".layout-", suffix: ".ts" });
  try {
    const files = await libFiles();
    await Deno.writeTextFile(root, files.map((f) => `import "./${relative(f)}";`).join("\n"));
    const graph = await moduleGraph(root);
    const edges: Edge[] = [];
    for (const module of graph.modules) {
      const from = libPath(module.specifier);
      if (!from) continue;
      for (const dependency of module.dependencies ?? []) {
        for (const target of [dependency.code?.specifier, dependency.type?.specifier]) {
          if (target) edges.push({ from, to: libPath(target) ?? target });
        }
      }
    }
    return edges;
  } finally {
    await Deno.remove(root);
  }
}

/** Every import between two modules of lib/. */
async function libImports(): Promise<Edge[]> {
  return (await libDependencies()).filter(({ to }) => !/^[a-z]+:/.test(to));
}

function relative(path: string): string {
  return path.slice(PROJECT_DIR.length + 1);
}

function libPath(specifier: string): string | undefined {
  const prefix = `file://${PROJECT_DIR}/lib/`;
  return specifier.startsWith(prefix) ? specifier.slice(prefix.length) : undefined;
}

function folderOf(path: string): string {
  return path.split("/")[0];
}

Deno.test("no module of lib/ imports across the line between the front door and the worker", async () => {
  const edges = await libImports();
  assert.ok(edges.length > 50, `the module graph was read (${edges.length} imports)`);
  const crossing = edges.filter(({ from, to }) =>
    (FORBIDDEN[folderOf(from)] ?? []).includes(folderOf(to))
  );
  assert.deepEqual(
    crossing.map(({ from, to }) => `${from} imports ${to}`),
    [],
    "imports that cross the line",
  );
});

Deno.test("the Lambda entry point never reaches the embedded backend, the worker or the set-up", async () => {
  const edges = await libImports();
  const reached = new Set(["http/lambda.ts"]);
  for (let grew = true; grew;) {
    grew = false;
    for (const { from, to } of edges) {
      if (reached.has(from) && !reached.has(to)) {
        reached.add(to);
        grew = true;
      }
    }
  }
  assert.ok(reached.has("storage/aws/dynamo_store.ts"), "the walk reached the AWS store");
  assert.deepEqual(
    [...reached].filter((path) =>
      path.startsWith("storage/embedded/") || path.startsWith("worker/") ||
      // Creating tables, queues and the bucket is setup's work.
      path === "storage/aws/provision.ts"
    ),
    [],
  );
});

/**
 * The npm packages `entry` reaches through code imports (not types); dynamic
 * imports only with `dynamic`, as a bundle holds them.
 */
async function npmPackagesReached(entry: string, dynamic: boolean): Promise<Set<string>> {
  const graph = await moduleGraph(entry);
  const modules = new Map(graph.modules.map((m) => [m.specifier, m]));
  const packages = new Set<string>();
  const seen = new Set<string>();
  const next = [...graph.roots];
  while (next.length > 0) {
    const specifier = next.pop()!;
    if (seen.has(specifier)) continue;
    seen.add(specifier);
    if (specifier.startsWith("npm:")) {
      packages.add(specifier.replace(/^npm:\/?/, "").replace(/@[^@/]+$/, ""));
      continue;
    }
    for (const dependency of modules.get(specifier)?.dependencies ?? []) {
      if (dependency.code && (dynamic || !dependency.isDynamic)) {
        next.push(dependency.code.specifier);
      }
    }
  }
  return packages;
}

/** The SDK's clients the store, the queue and the blobs use. */
const SDK_CLIENTS = [
  "@aws-sdk/client-dynamodb",
  "@aws-sdk/lib-dynamodb",
  "@aws-sdk/client-sqs",
  "@aws-sdk/client-s3",
];

Deno.test("the front door, its Lambda bundle and the worker reach AWS through the SDK's clients", async () => {
  for (
    const [entry, dynamic] of [
      // The S3 client is loaded at its first use (a dynamic import); a bundle holds it.
      ["main.ts", true],
      ["lib/http/lambda.ts", true],
      ["worker.ts", true],
    ] as const
  ) {
    const packages = await npmPackagesReached(entry, dynamic);
    assert.deepEqual(
      SDK_CLIENTS.filter((name) => !packages.has(name)),
      [],
      `the SDK clients ${entry} does not reach`,
    );
  }
});

Deno.test("the worker and the front door load the S3 client only at their first blob", async () => {
  for (const entry of ["worker.ts", "main.ts", "lib/http/lambda.ts"]) {
    const packages = await npmPackagesReached(entry, false);
    assert.ok(packages.has("@aws-sdk/client-sqs"), `the walk of ${entry} reached the SDK`);
    assert.equal(
      packages.has("@aws-sdk/client-s3"),
      false,
      `${entry} loads the S3 client at start`,
    );
  }
});

Deno.test("no module of lib/ signs a request or calls AWS with fetch: the SDK's clients do", async () => {
  const edges = await libDependencies();
  const signers = edges.filter(({ to }) => /^npm:\/?@(smithy|aws-sdk)\/signature-v4/.test(to));
  assert.deepEqual(signers, [], "imports of a signer");
  const handMade: string[] = [];
  for (const file of await libFiles()) {
    const code = await Deno.readTextFile(file);
    const path = relative(file);
    // fetch( that is no method of something else (app.fetch), and the marks of a hand-signed call.
    if (path.startsWith("lib/storage/") && /(^|[^.\w])fetch\(/m.test(code)) {
      handMade.push(`${path} calls fetch`);
    }
    if (/AWS4-HMAC-SHA256|x-amz-(target|date|content-sha256)|createHmac|subtle\.sign/i.test(code)) {
      handMade.push(`${path} signs or builds an AWS request`);
    }
  }
  assert.deepEqual(handMade, []);
});
