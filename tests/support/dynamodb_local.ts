/**
 * DynamoDB Local, AWS's own DynamoDB emulator, started by a test on a free
 * loopback port. Unlike Moto it serialises concurrent writes to one item as
 * DynamoDB does. It ships inside the npm package `amplify-dynamodb-simulator`;
 * the first run downloads that package once into `.cache/` in the project.
 */
import { PROJECT_DIR } from "./child_deno.ts";

/** The npm package that carries DynamoDB Local, and its registry integrity. */
const PACKAGE = "amplify-dynamodb-simulator@2.9.30";
const PACKAGE_INTEGRITY =
  "sha512-xTeeRLvzEfqyd5lh3bH4c0kHvSHHmmhD5ZDsHFKAQ5g2Zl6JqlFdutaQhCLHzxEp6Ry1o7TB6niIoXuQAnSewQ==";
const CACHE_DIR = `${PROJECT_DIR}/.cache/dynamodb-local-2.9.30`;
const LAUNCHER_SOURCE = `${PROJECT_DIR}/tests/support/LoopbackDynamoDbLocal.java`;
/** Start-up flags: a small, quick-starting JVM is all a test needs. */
const JVM_FLAGS = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xshare:auto", "-Xmx512m"];
const START_TIMEOUT_MS = 60_000;

/** A running DynamoDB Local. */
export interface DynamoDbLocal {
  /** e.g. http://127.0.0.1:41234 */
  readonly url: string;
  /** Its process id (the bench reads its CPU time). */
  readonly pid: number;
  stop(): Promise<void>;
}

/**
 * Where the test run's shared DynamoDB Local listens, and its process id,
 * when `tests/support/with_emulators.ts` started one.
 */
export const SHARED_DYNAMODB_VARIABLES = { url: "TEST_DYNAMODB_URL", pid: "TEST_DYNAMODB_PID" };

/** Why DynamoDB Local cannot run here (no Java, no JDK), or undefined when it can. */
export function dynamoDbLocalUnavailable(): string | undefined {
  // The run started one: no need to start two JVMs to ask again in every file.
  if (Deno.env.get(SHARED_DYNAMODB_VARIABLES.url)) return undefined;
  for (const [command, purpose] of [["java", "to run it"], ["javac", "to start it on loopback"]]) {
    try {
      const { success } = new Deno.Command(command, {
        args: ["-version"],
        stdout: "null",
        stderr: "null",
      }).outputSync();
      if (!success) return `\`${command} -version\` failed`;
    } catch {
      return `\`${command}\` is not on PATH; a JDK is needed ${purpose}`;
    }
  }
  return undefined;
}

let shared: Promise<DynamoDbLocal> | undefined;

/**
 * One DynamoDB Local for every test: the test run's (see
 * `tests/support/with_emulators.ts`) when there is one, else one for this
 * test file (or script), started by the first test that needs it and
 * stopped when the file's tests end. A JVM takes over a second to start,
 * and every test uses tables of its own, so they share it.
 */
export function sharedDynamoDbLocal(): Promise<DynamoDbLocal> {
  const url = Deno.env.get(SHARED_DYNAMODB_VARIABLES.url);
  if (url) {
    const pid = Number(Deno.env.get(SHARED_DYNAMODB_VARIABLES.pid));
    // The run stops it, not a test.
    return Promise.resolve({ url, pid, stop: () => Promise.resolve() });
  }
  shared ??= startDynamoDbLocal().catch((err) => {
    shared = undefined;
    throw err;
  });
  return shared;
}

/**
 * Starts DynamoDB Local in memory on 127.0.0.1 and waits until it listens.
 * It is killed when this process ends, if not stopped before; and it exits
 * by itself if this process dies, since its standard input then closes.
 */
export async function startDynamoDbLocal(): Promise<DynamoDbLocal> {
  const { emulatorDir, classesDir } = await ensureInstalled();
  const runDir = await Deno.makeTempDir({ prefix: "dynamodb-local-" });
  const portFile = `${runDir}/port`;
  const logFile = `${runDir}/log`;
  // No pipe is read: a read pending past the end of a test would count as a
  // leak there, since this process outlives the test that started it.
  const child = new Deno.Command("java", {
    args: [
      ...JVM_FLAGS,
      `-Djava.library.path=${emulatorDir}/DynamoDBLocal_lib`,
      "-cp",
      `${classesDir}:${emulatorDir}/DynamoDBLocal.jar:${emulatorDir}/DynamoDBLocal_lib/*`,
      "LoopbackDynamoDbLocal",
      portFile,
      logFile,
    ],
    cwd: emulatorDir,
    stdin: "piped",
    stdout: "null",
    stderr: "null",
  }).spawn();
  child.unref();
  let stopped = false;
  const kill = () => {
    if (stopped) return;
    stopped = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  };
  globalThis.addEventListener("unload", kill);
  const stop = async () => {
    globalThis.removeEventListener("unload", kill);
    kill();
    await child.status;
    await Deno.remove(runDir, { recursive: true }).catch(() => {});
  };
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (true) {
    const port = await Deno.readTextFile(portFile).catch(() => undefined);
    if (port) return { url: `http://127.0.0.1:${Number(port)}`, pid: child.pid, stop };
    if (Date.now() > deadline) {
      const log = await Deno.readTextFile(logFile).catch(() => "(no log)");
      await stop();
      throw new Error(
        `Cannot start DynamoDB Local: it did not listen within ${START_TIMEOUT_MS} ms:\n${log}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Downloads the package once, and compiles the loopback launcher when its source changed. */
async function ensureInstalled(): Promise<{ emulatorDir: string; classesDir: string }> {
  const emulatorDir = `${CACHE_DIR}/emulator`;
  if (!(await exists(`${emulatorDir}/DynamoDBLocal.jar`))) await download(emulatorDir);
  const source = await Deno.readFile(LAUNCHER_SOURCE);
  const digest = await crypto.subtle.digest("SHA-256", source);
  const tag = Array.from(new Uint8Array(digest).slice(0, 8), (b) => b.toString(16).padStart(2, "0"))
    .join("");
  const classesDir = `${CACHE_DIR}/launcher-${tag}`;
  if (!(await exists(`${classesDir}/LoopbackDynamoDbLocal.class`))) {
    const staging = await Deno.makeTempDir({ dir: CACHE_DIR, prefix: "launcher-" });
    await run("javac", [
      "-cp",
      `${emulatorDir}/DynamoDBLocal.jar:${emulatorDir}/DynamoDBLocal_lib/*`,
      "-d",
      staging,
      LAUNCHER_SOURCE,
    ]);
    await Deno.rename(staging, classesDir).catch(async (err) => {
      // Another run compiled the same source meanwhile.
      await Deno.remove(staging, { recursive: true });
      if (!(await exists(`${classesDir}/LoopbackDynamoDbLocal.class`))) throw err;
    });
  }
  return { emulatorDir, classesDir };
}

async function download(emulatorDir: string): Promise<void> {
  await Deno.mkdir(CACHE_DIR, { recursive: true });
  const staging = await Deno.makeTempDir({ dir: CACHE_DIR, prefix: "download-" });
  try {
    const packed = await run("npm", [
      "pack",
      PACKAGE,
      "--json",
      "--pack-destination",
      staging,
    ]);
    const [{ filename, integrity }] = JSON.parse(packed) as {
      filename: string;
      integrity: string;
    }[];
    if (integrity !== PACKAGE_INTEGRITY) {
      throw new Error(
        `Cannot use ${PACKAGE}: its integrity is ${integrity}, expected ${PACKAGE_INTEGRITY}`,
      );
    }
    await run("tar", ["-xzf", `${staging}/${filename}`, "-C", staging, "package/emulator"]);
    await Deno.rename(`${staging}/package/emulator`, emulatorDir).catch(async (err) => {
      if (!(await exists(`${emulatorDir}/DynamoDBLocal.jar`))) throw err;
    });
  } finally {
    await Deno.remove(staging, { recursive: true });
  }
}

async function run(command: string, args: string[]): Promise<string> {
  const output = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" })
    .output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  if (!output.success) {
    throw new Error(`\`${command} ${args.join(" ")}\` failed: ${decode(output.stderr)}`);
  }
  return decode(output.stdout);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}
