/**
 * A stand-in LLM for the bench: an OpenAI-compatible server on 127.0.0.1 that
 * answers every chat completion after a fixed delay (plus an optional random
 * jitter), or streams a reply a token at a time; it counts how many requests
 * it holds at once and notes when it sent each streamed token.
 */

/** Options for {@linkcode startFixedLatencyLlm}. */
export interface FixedLatencyOptions {
  /** Delay before a whole answer. */
  latencyMs: number;
  /** A random extra delay from 0 up to this, so answers do not fall in step with a poll. Default 0. */
  jitterMs?: number;
  /**
   * Tokens in a streamed reply, one every `tokenIntervalMs`. Without
   * `tokenIntervalMs` a streamed request (the worker always asks for one) is
   * answered like any other: its whole reply in one piece after the latency.
   */
  streamTokens?: number;
  /** Pause before each streamed token, e.g. 20 ms (50 tokens a second). */
  tokenIntervalMs?: number;
}

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
  /** performance.now() when each answered chat completion came in and when it ended, in arrival order. */
  readonly spans: readonly { start: number; end: number }[];
  /** performance.now() when each token of a streamed reply was sent, by the request's last user message. */
  readonly tokenSentAt: Map<string, number[]>;
  stop(): Promise<void>;
}

/** The text of the i-th streamed token: short words, so a piece's length says which token it ends with. */
export function streamToken(i: number): string {
  return `w${String(i).padStart(3, "0")} `;
}

/** Starts the stand-in on a free loopback port. */
export function startFixedLatencyLlm(options: FixedLatencyOptions | number): FixedLatencyLlm {
  const settings = typeof options === "number" ? { latencyMs: options } : options;
  const tokenIntervalMs = settings.tokenIntervalMs;
  const tokens = tokenIntervalMs === undefined ? 1 : settings.streamTokens ?? 50;
  let inFlight = 0;
  let maxInFlight = 0;
  let answered = 0;
  let busyMs = 0;
  const spans: { start: number; end: number }[] = [];
  const tokenSentAt = new Map<string, number[]>();
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
      let streaming = false;
      try {
        const body = await req.json() as {
          model?: string;
          stream?: boolean;
          messages?: { content?: unknown }[];
        };
        const model = body.model ?? "bench-model";
        const jitter = settings.jitterMs ? Math.random() * settings.jitterMs : 0;
        if (body.stream && tokenIntervalMs === undefined) {
          await new Promise((resolve) => setTimeout(resolve, settings.latencyMs + jitter));
        }
        if (body.stream) {
          streaming = true;
          const sentAt: number[] = [];
          tokenSentAt.set(String(body.messages?.at(-1)?.content ?? ""), sentAt);
          const span = { start: started, end: started };
          spans.push(span);
          return streamedReply(model, tokens, tokenIntervalMs ?? 0, sentAt, () => {
            inFlight--;
            answered++;
            span.end = performance.now();
            busyMs += span.end - started;
          });
        }
        await new Promise((resolve) => setTimeout(resolve, settings.latencyMs + jitter));
        answered++;
        return Response.json({
          id: `chatcmpl-bench-${answered}`,
          object: "chat.completion",
          created: Math.floor(Date.now() / 1000),
          model,
          choices: [{
            index: 0,
            message: { role: "assistant", content: "ok" },
            finish_reason: "stop",
          }],
          usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
        });
      } finally {
        if (!streaming) {
          inFlight--;
          const end = performance.now();
          busyMs += end - started;
          spans.push({ start: started, end });
        }
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
    spans,
    tokenSentAt,
    stop: () => stopped ??= server.shutdown(),
  };
}

/** Server-sent events as vLLM sends them, one token every `intervalMs`. */
function streamedReply(
  model: string,
  tokens: number,
  intervalMs: number,
  sentAt: number[],
  done: () => void,
): Response {
  const encoder = new TextEncoder();
  const event = (delta: Record<string, string>, finish: string | null = null) =>
    encoder.encode(
      `data: ${
        JSON.stringify({
          object: "chat.completion.chunk",
          model,
          choices: [{ index: 0, delta, finish_reason: finish }],
        })
      }\n\n`,
    );
  const body = new ReadableStream<Uint8Array>({
    async start(controller) {
      try {
        controller.enqueue(event({ role: "assistant" }));
        for (let i = 0; i < tokens; i++) {
          if (intervalMs > 0) await new Promise((r) => setTimeout(r, intervalMs));
          sentAt.push(performance.now());
          controller.enqueue(event({ content: streamToken(i) }));
        }
        controller.enqueue(event({}, "stop"));
        controller.enqueue(encoder.encode("data: [DONE]\n\n"));
        controller.close();
      } finally {
        done();
      }
    },
  });
  return new Response(body, { headers: { "content-type": "text/event-stream" } });
}
