/** Starts a real `moto_server` on a free loopback port for a test, and stops it. */
import { freePort } from "./net.ts";

/** A running Moto server. */
export interface Moto {
  /** e.g. http://127.0.0.1:41234 */
  readonly url: string;
  stop(): Promise<void>;
}

/** Why Moto tests cannot run here, or undefined when they can. */
export function motoUnavailable(): string | undefined {
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

/** Starts `moto_server -H 127.0.0.1 -p <free port>` and waits until it answers. */
export async function startMoto(): Promise<Moto> {
  const port = freePort();
  const child = new Deno.Command("moto_server", {
    args: ["-H", "127.0.0.1", "-p", String(port)],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = collect(child.stderr);
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  while (true) {
    try {
      const res = await fetch(`${url}/moto-api/`, { signal: AbortSignal.timeout(1000) });
      await res.body?.cancel();
      if (res.ok) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      await child.status;
      throw new Error(`Cannot start moto_server on port ${port}: ${await stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      await stderr;
    },
  };
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<string> {
  let text = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    text = (text + chunk).slice(-4000);
  }
  return text;
}
