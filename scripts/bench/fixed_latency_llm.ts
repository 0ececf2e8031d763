/**
 * A stand-in LLM for the bench: an OpenAI-compatible server on 127.0.0.1 that
 * answers every chat completion after a fixed delay, and counts how many
 * requests it holds at once.
 */

/** A running fixed-latency backend. */
export interface FixedLatencyLlm {
  /** The base URL to configure, ending in /v1. */
  readonly baseUrl: string;
  /** Requests being answered right now. */
  readonly inFlight: number;
  /** The most requests it held at once. */
  readonly maxInFlight: number;
  /** Requests answered so far. */
  readonly answered: number;
  /** Sum of every request's time in the server, in ms. */
  readonly busyMs: number;
  stop(): Promise<void>;
}

/** Starts the stand-in on a free loopback port. */
export function startFixedLatencyLlm(latencyMs: number): FixedLatencyLlm {
  let inFlight = 0;
  let maxInFlight = 0;
  let answered = 0;
  let busyMs = 0;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async function answer(req) {
      const path = new URL(req.url).pathname;
      if (req.method === "GET" && path === "/v1/models") {
        // What the worker asks at start: the models the bench's jobs name.
        return Response.json({
          object: "list",
          data: ["bench-text-model", "bench-vision-model"].map((id) => ({
            id,
            object: "model",
            created: 0,
            owned_by: "vllm",
          })),
        });
      }
      if (req.method !== "POST" || path !== "/v1/chat/completions") {
        return Response.json({ error: { message: `No route ${req.method} ${path}` } }, {
          status: 404,
        });
      }
      const started = performance.now();
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      try {
        const body = await req.json() as { model?: string };
        await new Promise((resolve) => setTimeout(resolve, latencyMs));
        answered++;
        return Response.json({
          id: `chatcmpl-bench-${answered}`,
          object: "chat.completion",
          created: Math.floor(Date.now() / 1000),
          model: body.model ?? "bench-model",
          choices: [{
            index: 0,
            message: { role: "assistant", content: "ok" },
            finish_reason: "stop",
          }],
          usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
        });
      } finally {
        inFlight--;
        busyMs += performance.now() - started;
      }
    },
  );
  let stopped: Promise<void> | undefined;
  return {
    baseUrl: `http://127.0.0.1:${server.addr.port}/v1`,
    get inFlight() {
      return inFlight;
    },
    get maxInFlight() {
      return maxInFlight;
    },
    get answered() {
      return answered;
    },
    get busyMs() {
      return busyMs;
    },
    stop: () => stopped ??= server.shutdown(),
  };
}
