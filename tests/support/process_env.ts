/**
 * Turns at changing the process's environment. Under `deno test --parallel`
 * test files run at once in one process, which has one environment: a test
 * that sets variables for code that reads `process.env` (the Lambda handler,
 * the SDK's credential chain) must not see another test's. A file lock takes
 * the turns, since files share no memory.
 */
import { PROJECT_DIR } from "./child_deno.ts";
import { within } from "./wait.ts";

const LOCK_DIR = `${PROJECT_DIR}/.cache`;
const LOCK_FILE = `${LOCK_DIR}/process-env.lock`;

/** The environment held for one test; `release` puts back what was there and lets the next in. */
export interface HeldProcessEnv extends AsyncDisposable {
  release(): Promise<void>;
}

/**
 * Waits for its turn, then sets `variables` in the process's environment
 * (undefined deletes one) until `release`.
 */
export async function holdProcessEnv(
  variables: Record<string, string | undefined>,
): Promise<HeldProcessEnv> {
  await Deno.mkdir(LOCK_DIR, { recursive: true });
  const lock = await Deno.open(LOCK_FILE, { create: true, write: true });
  try {
    await within(lock.lock(true), "another test to give back the process's environment", 120_000);
  } catch (err) {
    lock.close();
    throw err;
  }
  const saved = Object.entries(variables).map(([name]) => [name, Deno.env.get(name)] as const);
  for (const [name, value] of Object.entries(variables)) {
    if (value === undefined) Deno.env.delete(name);
    else Deno.env.set(name, value);
  }
  let released = false;
  const release = async () => {
    if (released) return;
    released = true;
    for (const [name, value] of saved) {
      if (value === undefined) Deno.env.delete(name);
      else Deno.env.set(name, value);
    }
    await lock.unlock();
    lock.close();
  };
  return { release, [Symbol.asyncDispose]: release };
}
