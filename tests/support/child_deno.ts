/** Runs the project's entry points as real child processes, with a clean environment. */

/** Repository root, for `cwd`. */
export const PROJECT_DIR = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");

/** A running `deno` child. */
export interface DenoChild {
  /** Sends a signal. */
  kill(signal: Deno.Signal): void;
  /** Resolves with the exit code and everything it printed. */
  exited: Promise<{ code: number; output: string }>;
}

/** Options for {@linkcode startDeno}. */
export interface StartDenoOptions {
  cwd?: string;
  /** The child's whole environment besides PATH and HOME, as on a fresh machine. */
  env?: Record<string, string | undefined>;
  /** The child is killed if it is still running after this long. Default three minutes. */
  deadlineMs?: number;
}

/** Starts `deno <args>` with only PATH, HOME and the given variables in its environment. */
export function startDeno(args: string[], options: StartDenoOptions = {}): DenoChild {
  const env: Record<string, string> = {
    PATH: Deno.env.get("PATH") ?? "",
    HOME: Deno.env.get("HOME") ?? "",
  };
  for (const [key, value] of Object.entries(options.env ?? {})) {
    if (value !== undefined) env[key] = value;
  }
  const child = new Deno.Command("deno", {
    args,
    cwd: options.cwd ?? PROJECT_DIR,
    clearEnv: true,
    env,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text()])
    .then(([out, err]) => out + err);
  // Every wait on a child ends: one that outlives its deadline is killed, and says so.
  let overdue = false;
  const deadline = setTimeout(() => {
    overdue = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }, options.deadlineMs ?? 180_000);
  return {
    kill: (signal) => {
      try {
        child.kill(signal);
      } catch {
        // already gone
      }
    },
    exited: child.status.then(async ({ code }) => {
      clearTimeout(deadline);
      const text = await output;
      return {
        code,
        output: overdue
          ? `${text}\n[killed: still running after its deadline of ${
            options.deadlineMs ?? 180_000
          } ms]`
          : text,
      };
    }),
  };
}

/** Permissions the gateway's entry points need, as in deno.json's tasks. */
export const RUN_FLAGS = [
  "--allow-net",
  "--allow-env",
  "--allow-read",
  "--allow-write",
  // node:https (the worker's pinned client) reads the root certificates, which needs all of sys.
  "--allow-sys",
];

/** Polls a URL until it answers 200, for at most `timeoutMs`. */
export async function waitUntilUp(
  url: string,
  child: DenoChild,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    try {
      const res = await fetch(url);
      await res.body?.cancel();
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(
        `${url} did not answer within ${timeoutMs} ms:\n${(await child.exited).output}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** What a fresh clone holds: the working tree without local state. */
const LOCAL_STATE = new Set([".git", ".env", ".cache", "data", "dist", "node_modules"]);

/** Copies the working tree as a fresh clone would hold it: no local state, no caches. */
export async function copyProject(from: string, to: string): Promise<void> {
  for await (const entry of Deno.readDir(from)) {
    if (LOCAL_STATE.has(entry.name)) continue;
    const source = `${from}/${entry.name}`;
    const target = `${to}/${entry.name}`;
    if (entry.isDirectory) {
      await Deno.mkdir(target);
      await copyProject(source, target);
    } else if (entry.isFile) {
      await Deno.copyFile(source, target);
    }
  }
}
