/**
 * A stand-in for vLLM or Ollama: a real OpenAI-compatible HTTP server on
 * 127.0.0.1 that records what it was sent and answers as told.
 */
import type { ChatMessage } from "../../lib/core/messages.ts";

/** One request the stand-in received. */
export interface RecordedRequest {
  model: string;
  messages: ChatMessage[];
  stream?: boolean;
  temperature?: number;
  max_tokens?: number;
}

/** What the stand-in answers: a reply text, or an HTTP error. */
export type StandInAnswer = { reply: string } | { status: number; message: string };

/** Options for {@linkcode startStandInLlm}. */
export interface StandInOptions {
  /** Name used in replies, e.g. "vllm". */
  name: string;
  /** Decides the answer; default echoes the last user message. */
  answer?: (request: RecordedRequest) => StandInAnswer | Promise<StandInAnswer>;
}

/** A running stand-in backend. */
export interface StandInLlm {
  /** The base URL to configure, ending in /v1. */
  readonly baseUrl: string;
  readonly requests: RecordedRequest[];
  stop(): Promise<void>;
}

/** The default answer: "<name> says: <last user text>". */
export function echoAnswer(name: string) {
  return (request: RecordedRequest): StandInAnswer => {
    const last = request.messages.at(-1);
    const text = typeof last?.content === "string"
      ? last.content
      : last?.content.map((p) => (p.type === "text" ? p.text : "")).join("") ?? "";
    return { reply: `${name} says: ${text}` };
  };
}

/** Starts a stand-in LLM server on a free loopback port. */
export function startStandInLlm(options: StandInOptions): StandInLlm {
  const requests: RecordedRequest[] = [];
  const answer = options.answer ?? echoAnswer(options.name);
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const path = new URL(req.url).pathname;
    if (req.method !== "POST" || path !== "/v1/chat/completions") {
      return Response.json({ error: { message: `No route ${req.method} ${path}` } }, {
        status: 404,
      });
    }
    const body = await req.json() as RecordedRequest;
    requests.push(body);
    const result = await answer(body);
    if ("status" in result) {
      return Response.json({ error: { message: result.message, type: "server_error" } }, {
        status: result.status,
      });
    }
    if (body.stream) return streamedReply(body.model, result.reply);
    return Response.json({
      id: `chatcmpl-${requests.length}`,
      object: "chat.completion",
      created: Math.floor(Date.now() / 1000),
      model: body.model,
      choices: [{
        index: 0,
        message: { role: "assistant", content: result.reply },
        finish_reason: "stop",
      }],
    });
  });
  let stopped: Promise<void> | undefined;
  return {
    baseUrl: `http://127.0.0.1:${server.addr.port}/v1`,
    requests,
    stop: () => stopped ??= server.shutdown(),
  };
}

/** The reply as server-sent events, a word at a time with a short pause between, as vLLM streams. */
function streamedReply(model: string, reply: string): Response {
  const pieces = reply.match(/\S+\s*|\s+/g) ?? [];
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
      controller.enqueue(event({ role: "assistant" }));
      for (const piece of pieces) {
        await new Promise((r) => setTimeout(r, 20));
        controller.enqueue(event({ content: piece }));
      }
      controller.enqueue(event({}, "stop"));
      controller.enqueue(encoder.encode("data: [DONE]\n\n"));
      controller.close();
    },
  });
  return new Response(body, { headers: { "content-type": "text/event-stream" } });
}
