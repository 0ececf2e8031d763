/** Real `moto_server`s on free loopback ports: one a test starts and stops, or one tests share. */
import { freePort } from "./net.ts";

/** A running Moto server. */
export interface Moto {
  /** e.g. http://127.0.0.1:41234 */
  readonly url: string;
  stop(): Promise<void>;
}

/** Where the test run's shared Moto listens, when `tests/support/with_emulators.ts` started one. */
export const SHARED_MOTO_VARIABLE = "TEST_MOTO_URL";

/** Why Moto tests cannot run here, or undefined when they can. */
export function motoUnavailable(): string | undefined {
  // The run started one: no need to start Python (over a second) to ask again in every file.
  if (Deno.env.get(SHARED_MOTO_VARIABLE)) return undefined;
  try {
    const { success } = new Deno.Command("moto_server", {
      args: ["--help"],
      stdout: "null",
      stderr: "null",
    })
      .outputSync();
    return success ? undefined : "moto_server --help failed";
  } catch (err) {
    return `moto_server is not on PATH (${(err as Error).message})`;
  }
}

/**
 * Whether a test of `what` that needs Moto should be ignored: only when Moto
 * is missing and we are not in CI, where that is a failure, loudly.
 */
export function skipWithoutMoto(what: string): boolean {
  const reason = motoUnavailable();
  if (reason && Deno.env.get("CI")) throw new Error(`Cannot run ${what} in CI: ${reason}`);
  if (reason) console.warn(`\n!!! SKIPPING ${what}: ${reason}\n`);
  return reason !== undefined;
}

/** Starts `moto_server -H 127.0.0.1 -p <free port>` of the caller's own and waits until it answers. */
export async function startMoto(): Promise<Moto> {
  const port = freePort();
  const child = spawnMoto(port, "piped");
  const stderr = collect(child.stderr!);
  try {
    await untilAnswers(port, child);
  } catch (err) {
    child.kill("SIGKILL");
    await child.status;
    throw new Error(`${(err as Error).message}: ${await stderr}`);
  }
  return {
    url: `http://127.0.0.1:${port}`,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      await stderr;
    },
  };
}

let shared: Promise<Moto> | undefined;

/**
 * One Moto for every test that can share it: the test run's (see
 * `tests/support/with_emulators.ts`) when there is one, else one for this
 * test file, started by its first test that needs it and stopped when the
 * file's tests end. Each test uses queues, tables and buckets of its own
 * names, so they share it; `stop` leaves it running.
 */
export function sharedMoto(): Promise<Moto> {
  shared ??= startSharedMoto().catch((err) => {
    shared = undefined;
    throw err;
  });
  return shared;
}

async function startSharedMoto(): Promise<Moto> {
  const leave = () => Promise.resolve();
  const url = Deno.env.get(SHARED_MOTO_VARIABLE);
  if (url) return { url, stop: leave };
  const port = freePort();
  // Nothing is read from it: a read pending past the test that started it would count as a leak.
  const child = spawnMoto(port, "null");
  child.unref();
  const kill = () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  };
  globalThis.addEventListener("unload", kill);
  try {
    await untilAnswers(port, child);
  } catch (err) {
    globalThis.removeEventListener("unload", kill);
    kill();
    throw new Error(
      `${(err as Error).message} (run \`moto_server -H 127.0.0.1 -p ${port}\` to see why)`,
    );
  }
  return { url: `http://127.0.0.1:${port}`, stop: leave };
}

function spawnMoto(port: number, stderr: "piped" | "null"): Deno.ChildProcess {
  return new Deno.Command("moto_server", {
    args: ["-H", "127.0.0.1", "-p", String(port)],
    stdin: "null",
    stdout: "null",
    stderr,
  }).spawn();
}

/** Waits until Moto answers on `port`; throws when it exits first or after 30 s. */
async function untilAnswers(port: number, child: Deno.ChildProcess): Promise<void> {
  let exited: number | undefined;
  child.status.then((status) => exited = status.code);
  const deadline = Date.now() + 30_000;
  while (true) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/moto-api/`, {
        signal: AbortSignal.timeout(1000),
      });
      await res.body?.cancel();
      if (res.ok) return;
    } catch {
      // not up yet
    }
    if (exited !== undefined) {
      throw new Error(`Cannot start moto_server on port ${port}: it exited with code ${exited}`);
    }
    if (Date.now() > deadline) {
      throw new Error(`Cannot start moto_server on port ${port}: it did not answer within 30 s`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<string> {
  let text = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    text = (text + chunk).slice(-4000);
  }
  return text;
}

/**
 * A fake Authorization header that routes a request to a Moto service, for
 * the set-up calls made before its checks are on.
 */
export function routedTo(service: string): Record<string, string> {
  return {
    authorization:
      `AWS4-HMAC-SHA256 Credential=setup/20260101/us-east-1/${service}/aws4_request, ` +
      "SignedHeaders=host, Signature=0",
  };
}

/**
 * Turns on Moto's signature and permission checks, and returns the keys of a
 * user that may do `actions` (an IAM policy's, e.g. `["s3:*"]`). The checks
 * start after `setupCalls` more calls, which the caller makes with
 * {@linkcode routedTo} (a bucket, a queue, a table).
 */
export async function motoUserWithChecks(
  moto: Moto,
  actions: string[],
  setupCalls: number,
): Promise<{ accessKeyId: string; secretAccessKey: string }> {
  // The user, its key and its policy are the first three of the calls before the checks.
  const reset = await fetch(`${moto.url}/moto-api/reset-auth`, {
    method: "POST",
    body: String(3 + setupCalls),
    signal: AbortSignal.timeout(10_000),
  });
  if (!reset.ok) throw new Error(`Cannot turn on Moto's checks: ${await reset.text()}`);
  await iam(moto.url, { Action: "CreateUser", UserName: "gateway" });
  const keyXml = await iam(moto.url, { Action: "CreateAccessKey", UserName: "gateway" });
  await iam(moto.url, {
    Action: "PutUserPolicy",
    UserName: "gateway",
    PolicyName: "allowed",
    PolicyDocument: JSON.stringify({
      Version: "2012-10-17",
      Statement: [{ Effect: "Allow", Action: actions, Resource: "*" }],
    }),
  });
  return {
    accessKeyId: /<AccessKeyId>([^<]+)</.exec(keyXml)![1],
    secretAccessKey: /<SecretAccessKey>([^<]+)</.exec(keyXml)![1],
  };
}

/** An IAM query call on Moto; returns its XML answer. */
async function iam(url: string, params: Record<string, string>): Promise<string> {
  const res = await fetch(url, {
    method: "POST",
    headers: { ...routedTo("iam"), "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ ...params, Version: "2010-05-08" }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`Moto refused IAM ${params.Action}: ${text}`);
  return text;
}
