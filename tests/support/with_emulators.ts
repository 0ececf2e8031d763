/**
 * Runs a command (the suite: `deno test --parallel ...`) with one DynamoDB
 * Local and one Moto for the whole run, and stops them when it ends.
 *
 *     deno run <permissions> tests/support/with_emulators.ts deno test --parallel ... tests/
 *
 * Test files run in isolates of their own, so a module-level emulator lives
 * for one file only; this one lives for the run. The tests find it through
 * the environment (see `sharedMoto` and `sharedDynamoDbLocal`), and start
 * one per file when run without it. An emulator that cannot run here (no
 * Java, no Moto) is not started: its tests then skip, or fail in CI.
 * DENO_JOBS (how many files run at once) defaults to {@linkcode DEFAULT_JOBS}.
 * The command's exit code is this script's.
 */
import {
  dynamoDbLocalUnavailable,
  SHARED_DYNAMODB_VARIABLES,
  startDynamoDbLocal,
} from "./dynamodb_local.ts";
import { motoUnavailable, SHARED_MOTO_VARIABLE, startMoto } from "./moto.ts";

/**
 * Test files at once when DENO_JOBS is unset. Most of a test's time is spent
 * waiting on emulators, stand-ins and child processes, so more files than
 * cores keep two cores busy.
 */
export const DEFAULT_JOBS = 4;

/** Something started for the run, and how to stop it. */
interface Started {
  env: Record<string, string>;
  stop(): Promise<void>;
}

/**
 * Starts each emulator that can run here, for the whole run. Each is tried
 * at once: asking first whether it can run costs seconds (Python, two JVMs),
 * so that is asked only of one that failed to start.
 */
async function startEmulators(): Promise<Started[]> {
  const results = await Promise.allSettled([
    unlessUnavailable(motoUnavailable, async () => {
      const moto = await startMoto();
      return { env: { [SHARED_MOTO_VARIABLE]: moto.url }, stop: () => moto.stop() };
    }),
    unlessUnavailable(dynamoDbLocalUnavailable, async () => {
      const dynamodb = await startDynamoDbLocal();
      return {
        env: {
          [SHARED_DYNAMODB_VARIABLES.url]: dynamodb.url,
          [SHARED_DYNAMODB_VARIABLES.pid]: String(dynamodb.pid),
        },
        stop: () => dynamodb.stop(),
      };
    }),
  ]);
  const started = results.flatMap((r) => r.status === "fulfilled" && r.value ? [r.value] : []);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) {
    await Promise.all(started.map((s) => s.stop()));
    throw failed.reason;
  }
  return started;
}

/** Starts an emulator; when that fails because it cannot run here, resolves with nothing. */
async function unlessUnavailable(
  unavailable: () => string | undefined,
  start: () => Promise<Started>,
): Promise<Started | undefined> {
  try {
    return await start();
  } catch (err) {
    // Its tests say why they skip (or, in CI, fail).
    if (unavailable() !== undefined) return undefined;
    throw err;
  }
}

/** Runs `command` with the emulators in its environment; resolves with its exit code. */
export async function runWithEmulators(command: string[]): Promise<number> {
  if (command.length === 0) {
    throw new TypeError("Cannot run the suite: no command given, e.g. `deno test tests/`");
  }
  const started = await startEmulators();
  try {
    const child = new Deno.Command(command[0], {
      args: command.slice(1),
      env: {
        DENO_JOBS: Deno.env.get("DENO_JOBS") ?? String(DEFAULT_JOBS),
        ...Object.assign({}, ...started.map((s) => s.env)),
      },
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    // Ctrl-C reaches the command too; this process waits for it to end, then stops the emulators.
    const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
    const forward = signals.map((signal) => {
      const listener = () => {
        try {
          child.kill(signal);
        } catch {
          // already gone
        }
      };
      Deno.addSignalListener(signal, listener);
      return () => Deno.removeSignalListener(signal, listener);
    });
    try {
      return (await child.status).code;
    } finally {
      for (const remove of forward) remove();
    }
  } finally {
    await Promise.all(started.map((s) => s.stop()));
  }
}

if (import.meta.main) {
  Deno.exit(await runWithEmulators(Deno.args));
}
