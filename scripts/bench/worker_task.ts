/**
 * How `deno task worker` starts the worker, read from deno.json: the
 * environment it sets before `deno run` and its V8 flags. The bench starts
 * its workers the same way, so it measures what users run.
 */
import denoJson from "../../deno.json" with { type: "json" };

/** The worker task's settings that change how the process runs. */
export interface WorkerTaskSettings {
  /** Variables set before `deno run` (`NAME=value deno run …`). */
  env: Record<string, string>;
  /** Its `--v8-flags=…` argument, if it has one. */
  v8Flags?: string;
}

/**
 * Reads the settings from the `worker` task's command line; BENCH_WORKER_V8_FLAGS
 * (e.g. `--optimize-for-size`, or empty for V8's defaults) tries others instead.
 */
export function workerTaskSettings(command: string = denoJson.tasks.worker): WorkerTaskSettings {
  const words = command.trim().split(/\s+/);
  const env: Record<string, string> = {};
  let i = 0;
  for (; i < words.length && /^[A-Z_][A-Z0-9_]*=/.test(words[i]); i++) {
    const at = words[i].indexOf("=");
    env[words[i].slice(0, at)] = words[i].slice(at + 1);
  }
  if (words[i] !== "deno" || words[i + 1] !== "run") {
    throw new Error(`Cannot read the worker task: expected "deno run", got "${command}"`);
  }
  const tried = Deno.env.get("BENCH_WORKER_V8_FLAGS");
  if (tried !== undefined) {
    return { env, v8Flags: tried.trim() ? `--v8-flags=${tried.trim()}` : undefined };
  }
  return { env, v8Flags: words.find((word) => word.startsWith("--v8-flags=")) };
}

/** The variables a child worker needs besides the gateway's own: where Deno keeps its cache. */
const PASSED_THROUGH = ["PATH", "HOME", "DENO_DIR", "XDG_CACHE_HOME"];

/** The whole environment of a worker started as the task starts it, with the gateway's variables `env`. */
export function workerEnv(
  task: WorkerTaskSettings,
  env: Record<string, string>,
): Record<string, string> {
  const passed = Object.fromEntries(
    PASSED_THROUGH.flatMap((name) => {
      const value = Deno.env.get(name);
      return value === undefined ? [] : [[name, value]];
    }),
  );
  return { ...passed, ...task.env, ...env };
}
