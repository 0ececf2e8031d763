/**
 * A real HTTP server on 127.0.0.1 in front of a stand-in LLM, for tests of
 * what a worker makes of a backend that is down, comes up, or answers only
 * part of its API: it passes requests on, answers every one with a 503 while
 * "down" (as a server still loading its model), and fails the paths it is
 * told to (Ollama's `/api/show`, say) with a 500.
 */

/** A running switch in front of a backend. */
export interface BackendSwitch {
  /** The base URL to configure instead of the stand-in's, ending in /v1. */
  readonly baseUrl: string;
  /** While true, every request is answered 503. */
  down: boolean;
  /** Paths answered 500 while the rest pass. */
  readonly failing: Set<string>;
  /** Requests answered 503 or 500 so far. */
  readonly refused: number;
  stop(): Promise<void>;
}

/** Starts a switch in front of `baseUrl` (a stand-in's, ending in /v1), passing requests on. */
export function startBackendSwitch(baseUrl: string): BackendSwitch {
  const target = new URL(baseUrl).origin;
  let refused = 0;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (req) => {
      const url = new URL(req.url);
      if (state.down || state.failing.has(url.pathname)) {
        refused++;
        await req.body?.cancel();
        return state.down
          ? new Response("Service Unavailable: loading model", { status: 503 })
          : Response.json({ error: "failed to read the model" }, { status: 500 });
      }
      const body = req.body ? await req.arrayBuffer() : undefined;
      const answer = await fetch(`${target}${url.pathname}${url.search}`, {
        method: req.method,
        headers: req.headers,
        body,
        signal: req.signal,
      });
      return new Response(answer.body, { status: answer.status, headers: answer.headers });
    },
  );
  const state: BackendSwitch = {
    baseUrl: `http://127.0.0.1:${server.addr.port}/v1`,
    down: false,
    failing: new Set(),
    get refused() {
      return refused;
    },
    stop: () => server.shutdown(),
  };
  return state;
}
