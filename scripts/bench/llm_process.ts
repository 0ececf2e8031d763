/**
 * The fixed-latency stand-in in a process of its own, as vLLM runs beside the
 * worker: so the bench's front door, busy taking jobs in the same process,
 * does not hold up the stand-in's answers, and its timers fire on time.
 *
 * It tells the bench (scripts/bench/json_child.ts) its base URL once
 * listening, and answers `status` (requests in flight now, the most at once)
 * and `spans` (each answered call's start and end). Times cross the process
 * boundary as wall-clock milliseconds (`performance.timeOrigin` plus
 * `performance.now()`), and are read back on the bench's own clock.
 */
import { startFixedLatencyLlm } from "./fixed_latency_llm.ts";
import { answerBench, startJsonChild, tellBench } from "./json_child.ts";

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
  const child = await startJsonChild<string>({
    what: "the stand-in backend",
    args: ["run", "--allow-net=127.0.0.1", new URL(import.meta.url).pathname, String(latencyMs)],
  });
  return {
    baseUrl: child.ready,
    pid: child.pid,
    async status() {
      return await child.ask("status") as LlmStatus;
    },
    async spans() {
      const spans = await child.ask("spans") as [number, number][];
      const origin = performance.timeOrigin;
      return spans.map(([start, end]) => ({ start: start - origin, end: end - origin }));
    },
    stop: child.stop,
  };
}

if (import.meta.main) {
  const llm = startFixedLatencyLlm(Number(Deno.args[0]));
  const origin = performance.timeOrigin;
  tellBench("ready", llm.baseUrl);
  // Ends with the bench: its end closes this process's standard input.
  await answerBench((command) => {
    if (command === "status") return { inFlight: llm.inFlight, maxInFlight: llm.maxInFlight };
    if (command === "spans") return llm.spans.map((s) => [origin + s.start, origin + s.end]);
    return null;
  });
  await llm.stop();
}
