/**
 * The fixed-latency stand-in in a process of its own, as vLLM runs beside the
 * worker: so the bench's front door, busy taking jobs in the same process,
 * does not hold up the stand-in's answers, and its timers fire on time.
 *
 * The child tells the bench on its standard output, one JSON object a line:
 * `{"baseUrl":…}` once listening, then an answer to each line the bench writes
 * on its standard input: `status` (requests in flight now, the most at once)
 * and `spans` (each answered call's start and end). Times cross the process
 * boundary as wall-clock milliseconds (`performance.timeOrigin` plus
 * `performance.now()`), and are read back on the bench's own clock. Closing
 * its standard input stops it.
 */
import { startFixedLatencyLlm } from "./fixed_latency_llm.ts";
import { lines } from "./lines.ts";

/** A call the stand-in answered: when it came in and when it ended, on the bench's clock. */
export interface Span {
  start: number;
  end: number;
}

/** The stand-in's counts now. */
export interface LlmStatus {
  inFlight: number;
  maxInFlight: number;
}

/** A stand-in running in a child process. */
export interface LlmProcess {
  /** The base URL to configure, ending in /v1. */
  readonly baseUrl: string;
  readonly pid: number;
  status(): Promise<LlmStatus>;
  /** Every chat completion answered so far, in the order they ended. */
  spans(): Promise<Span[]>;
  stop(): Promise<void>;
}

/** Starts the stand-in, answering after `latencyMs`, in a child `deno` process. */
export async function startLlmProcess(latencyMs: number): Promise<LlmProcess> {
  const child = new Deno.Command("deno", {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      new URL(import.meta.url).pathname,
      String(latencyMs),
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const listening = Promise.withResolvers<string>();
  const answers: PromiseWithResolvers<Record<string, unknown>>[] = [];
  let ended: Error | undefined;
  const reading = (async () => {
    try {
      for await (const line of lines(child.stdout)) {
        let message;
        try {
          message = JSON.parse(line);
        } catch {
          console.error(line); // not one of its answers: show it
          continue;
        }
        if (message.baseUrl) listening.resolve(message.baseUrl);
        else answers.shift()?.resolve(message);
      }
      ended = new Error("The stand-in backend's process has ended");
    } catch (err) {
      ended = new Error(`Cannot read the stand-in backend's answers: ${err}`);
    }
    // Nothing more will come: whoever still waits is told so.
    listening.reject(new Error("Cannot start the stand-in backend: it exited before listening"));
    for (const answer of answers.splice(0)) answer.reject(ended);
  })();
  const writer = child.stdin.getWriter();
  const stop = async () => {
    await writer.close().catch(() => {});
    await child.status;
    await reading;
  };
  const ask = async (command: string) => {
    if (ended) throw ended;
    const answer = Promise.withResolvers<Record<string, unknown>>();
    answers.push(answer);
    try {
      await writer.write(new TextEncoder().encode(`${command}\n`));
    } catch (err) {
      answers.splice(answers.indexOf(answer), 1);
      throw err;
    }
    return await answer.promise;
  };
  let baseUrl: string;
  try {
    baseUrl = await listening.promise;
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    baseUrl,
    pid: child.pid,
    async status() {
      const { inFlight, maxInFlight } = await ask("status");
      return { inFlight: Number(inFlight), maxInFlight: Number(maxInFlight) };
    },
    async spans() {
      const { spans } = await ask("spans") as { spans: [number, number][] };
      const origin = performance.timeOrigin;
      return spans.map(([start, end]) => ({ start: start - origin, end: end - origin }));
    },
    stop,
  };
}

if (import.meta.main) {
  const llm = startFixedLatencyLlm(Number(Deno.args[0]));
  const say = (message: unknown) => console.log(JSON.stringify(message));
  say({ baseUrl: llm.baseUrl });
  const origin = performance.timeOrigin;
  // Ends with the bench: its end closes this process's standard input.
  for await (const line of lines(Deno.stdin.readable)) {
    if (line === "status") say({ inFlight: llm.inFlight, maxInFlight: llm.maxInFlight });
    else if (line === "spans") {
      say({ spans: llm.spans.map((s) => [origin + s.start, origin + s.end]) });
    }
  }
  await llm.stop();
}
