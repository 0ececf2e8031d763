/**
 * How long the queue makes a caller wait: the added latency of a queued
 * non-streamed completion on the embedded backend (against calling the
 * stand-in directly, and against a plain proxy in front of it), the time from
 * the worker's completing write to the client's answer on the AWS backend, and
 * how evenly a streamed reply's pieces reach the client.
 */
import type { AwsEmulators } from "../../tests/support/aws_emulators.ts";
import { startFixedLatencyLlm, streamToken } from "./fixed_latency_llm.ts";
import { postCompletion, startServedGateway } from "./served.ts";
import { percentile, round } from "./stats.ts";

/** The added latency of the queued path, in ms (p50 of each path over the same requests). */
export interface QueuedPathResult {
  requests: number;
  direct_p50_ms: number;
  proxy_p50_ms: number;
  gateway_p50_ms: number;
  /** Gateway p50 minus direct p50. */
  gateway_added_ms: number;
  /** Plain proxy p50 minus direct p50. */
  proxy_added_ms: number;
}

/** Times `requests` sequential calls on each path, interleaved so noise falls on all alike. */
export async function measureQueuedPath(requests: number): Promise<QueuedPathResult> {
  const llm = startFixedLatencyLlm({ latencyMs: 0 });
  const proxy = startPlainProxy(llm.baseUrl);
  const gateway = await startServedGateway("embedded", llm.baseUrl);
  try {
    const llmUrl = llm.baseUrl.replace(/\/v1$/, "");
    const direct = (n: number) => timed(() => postCompletion(llmUrl, `d${n}`));
    const proxied = (n: number) => timed(() => postCompletion(proxy.url, `p${n}`));
    const queued = (n: number) => timed(() => postCompletion(gateway.url, `g${n}`));
    const paths = [direct, proxied, queued];
    const times: number[][] = [[], [], []];
    const warmup = 20;
    for (let i = 0; i < warmup + requests; i++) {
      for (let k = 0; k < paths.length; k++) {
        const which = (i + k) % paths.length;
        const ms = await paths[which](i);
        if (i >= warmup) times[which].push(ms);
      }
    }
    const [d, p, g] = times.map((t) => percentile(t, 50));
    return {
      requests,
      direct_p50_ms: round(d),
      proxy_p50_ms: round(p),
      gateway_p50_ms: round(g),
      gateway_added_ms: round(g - d),
      proxy_added_ms: round(p - d),
    };
  } finally {
    await gateway.stop();
    await proxy.stop();
    await llm.stop();
  }
}

/** The time from the worker's completing write to the client's answer, on DynamoDB. */
export interface AwsWaitResult {
  requests: number;
  clients: number;
  p50_ms: number;
  p90_ms: number;
  max_ms: number;
  /** Batched reads the front door made, per answered request. */
  reads_per_request: number;
}

/**
 * Sends non-streamed completions from `clients` callers at once, each one
 * after another, with backend latencies spread over 200–700 ms so answers do
 * not fall in step with the read schedule.
 */
export async function measureAwsWait(
  emulators: AwsEmulators,
  requests: number,
  clients: number,
): Promise<AwsWaitResult> {
  const llm = startFixedLatencyLlm({ latencyMs: 200, jitterMs: 500 });
  const gateway = await startServedGateway("aws", llm.baseUrl, emulators);
  try {
    const answeredAt = new Map<string, number>();
    let next = 0;
    const client = async () => {
      while (next < requests) {
        const n = next++;
        const res = await postCompletion(gateway.url, `wait ${n}`);
        const body = await res.json() as { id?: string };
        const at = performance.now();
        if (res.status !== 200 || !body.id) {
          throw new Error(`Bench request ${n} answered ${res.status}: ${JSON.stringify(body)}`);
        }
        answeredAt.set(body.id.replace(/^chatcmpl-/, ""), at);
      }
    };
    const readsBefore = gateway.readCalls ?? 0;
    await Promise.all(Array.from({ length: clients }, client));
    const delays = [...answeredAt].map(([id, at]) => at - gateway.watch.completingAt.get(id)!);
    return {
      requests,
      clients,
      p50_ms: round(percentile(delays, 50)),
      p90_ms: round(percentile(delays, 90)),
      max_ms: round(Math.max(...delays)),
      reads_per_request: round(((gateway.readCalls ?? 0) - readsBefore) / requests),
    };
  } finally {
    await gateway.stop();
    await llm.stop();
  }
}

/** How a streamed reply's pieces reached the client. */
export interface StreamResult {
  backend: string;
  streams: number;
  tokens_per_stream: number;
  token_interval_ms: number;
  /** Pieces the client received per stream, on average. */
  pieces_per_stream: number;
  /** Time between consecutive pieces of a stream, as the client saw it. */
  gap_p50_ms: number;
  gap_p90_ms: number;
  gap_max_ms: number;
  /** From the stand-in sending a token to the client receiving it. */
  delay_p50_ms: number;
  delay_p90_ms: number;
}

/** Streams `streams` replies one after another through the gateway and times each piece. */
export async function measureStreams(
  backend: "embedded" | "aws",
  streams: number,
  emulators?: AwsEmulators,
): Promise<StreamResult> {
  const tokens = 50;
  const tokenIntervalMs = 20;
  const llm = startFixedLatencyLlm({ latencyMs: 0, streamTokens: tokens, tokenIntervalMs });
  const gateway = await startServedGateway(backend, llm.baseUrl, emulators);
  try {
    const gaps: number[] = [];
    const delays: number[] = [];
    let pieces = 0;
    for (let s = 0; s < streams; s++) {
      const prompt = `stream ${s}`;
      const arrivals = await readStream(await postCompletion(gateway.url, prompt, true));
      const sentAt = llm.tokenSentAt.get(prompt) ?? [];
      const tokenChars = streamToken(0).length;
      const expected = Array.from({ length: tokens }, (_, i) => streamToken(i)).join("");
      if (arrivals.map((a) => a.text).join("") !== expected) {
        throw new Error(`Bench stream ${s} did not reassemble the reply`);
      }
      let length = 0;
      arrivals.forEach((arrival, i) => {
        length += arrival.text.length;
        const lastToken = Math.floor(length / tokenChars) - 1;
        delays.push(arrival.at - sentAt[lastToken]);
        if (i > 0) gaps.push(arrival.at - arrivals[i - 1].at);
      });
      pieces += arrivals.length;
    }
    return {
      backend,
      streams,
      tokens_per_stream: tokens,
      token_interval_ms: tokenIntervalMs,
      pieces_per_stream: round(pieces / streams),
      gap_p50_ms: round(percentile(gaps, 50)),
      gap_p90_ms: round(percentile(gaps, 90)),
      gap_max_ms: round(Math.max(...gaps)),
      delay_p50_ms: round(percentile(delays, 50)),
      delay_p90_ms: round(percentile(delays, 90)),
    };
  } finally {
    await gateway.stop();
    await llm.stop();
  }
}

/** Reads a chat.completion.chunk stream; each piece of content with when it arrived. */
async function readStream(res: Response): Promise<{ at: number; text: string }[]> {
  if (res.status !== 200 || !res.body) {
    throw new Error(`Bench stream answered ${res.status}: ${await res.text()}`);
  }
  const arrivals: { at: number; text: string }[] = [];
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const bytes of res.body) {
    const at = performance.now();
    buffer += decoder.decode(bytes, { stream: true });
    const events = buffer.split("\n\n");
    buffer = events.pop() ?? "";
    for (const event of events) {
      const data = event.replace(/^data: /, "");
      if (data === "[DONE]") continue;
      const chunk = JSON.parse(data) as { choices?: { delta?: { content?: string } }[] };
      const text = chunk.choices?.[0]?.delta?.content;
      if (text) arrivals.push({ at, text });
    }
  }
  return arrivals;
}

/** Sends a request and reads its whole answer; the time it took. */
async function timed(send: () => Promise<Response>): Promise<number> {
  const started = performance.now();
  const res = await send();
  const text = await res.text();
  if (res.status !== 200) throw new Error(`Bench request answered ${res.status}: ${text}`);
  return performance.now() - started;
}

/** A plain synchronous proxy: forwards each request to the backend and its answer back. */
function startPlainProxy(llmBaseUrl: string): { url: string; stop(): Promise<void> } {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (req) => {
      const upstream = await fetch(`${llmBaseUrl}/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: await req.text(),
        signal: AbortSignal.timeout(60_000),
      });
      return new Response(upstream.body, {
        status: upstream.status,
        headers: { "content-type": upstream.headers.get("content-type") ?? "application/json" },
      });
    },
  );
  return { url: `http://127.0.0.1:${server.addr.port}`, stop: () => server.shutdown() };
}
