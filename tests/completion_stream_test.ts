import assert from "node:assert/strict";
import { readCompletionStream } from "../lib/worker/completion_stream.ts";

function streamOf(chunks: readonly Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<string[]> {
  return await Array.fromAsync(readCompletionStream(stream));
}

function delta(content: string): string {
  return `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content } }] })}`;
}

Deno.test("readCompletionStream() reads a stream the same however its bytes are split", async (t) => {
  const text = [
    ": keep-alive\r\n",
    "\r\n",
    "event: message\r\n",
    "id: 1\r\n",
    'data: {"choices":[{"index":0,"delta":{"role":"assistant"}}]}\r\n',
    "\r\n",
    `${delta("Café ")}\n\n`,
    `${delta("🚀 ok")}\r\n\r\n`,
    "data:",
    '{"choices":[{"index":0,"delta":{"content":"!"}}]}\r\r',
    'data: {"choices":[{"index":0,"delta":{"content":""},"finish_reason":"stop"}]}\n\n',
    'data: {"choices":[]}\n\n',
    "data: [DONE]\n\n",
    `${delta("after the end")}\n\n`,
  ].join("");
  const bytes = new TextEncoder().encode(text);
  const expected = ["Café ", "🚀 ok", "!"];

  await t.step("in one chunk", async () => {
    assert.deepEqual(await collect(streamOf([bytes])), expected);
  });

  await t.step("one byte at a time", async () => {
    const chunks = Array.from(bytes, (_, i) => bytes.subarray(i, i + 1));
    assert.deepEqual(await collect(streamOf(chunks)), expected);
  });

  await t.step("in two chunks, at every possible point", async () => {
    for (let i = 1; i < bytes.length; i++) {
      const chunks = [bytes.subarray(0, i), bytes.subarray(i)];
      assert.deepEqual(await collect(streamOf(chunks)), expected, `split at byte ${i}`);
    }
  });
});

Deno.test("readCompletionStream() joins a data field split over several lines", async () => {
  const text = 'data: {"choices":\ndata: [{"delta":{"content":"joined"}}]}\n\n';
  assert.deepEqual(await collect(streamOf([new TextEncoder().encode(text)])), ["joined"]);
});

Deno.test("readCompletionStream() yields the deltas of a stream that closes without [DONE]", async () => {
  const text = `${delta("a")}\n\n${delta("b")}`;
  assert.deepEqual(await collect(streamOf([new TextEncoder().encode(text)])), ["a", "b"]);
});

Deno.test("readCompletionStream() stops and cancels the body at [DONE]", async () => {
  let cancelled = false;
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(encoder.encode(`${delta("only")}\n\ndata: [DONE]\n\n`));
      // Left open, as a server might keep the connection.
    },
    cancel() {
      cancelled = true;
    },
  });
  assert.deepEqual(await collect(body), ["only"]);
  assert.equal(cancelled, true);
});

Deno.test("readCompletionStream() throws an error event's message", async (t) => {
  const encoder = new TextEncoder();
  await t.step("error object", async () => {
    const text = `${delta("partial")}\n\ndata: {"error":{"message":"model overloaded",` +
      `"type":"server_error"}}\n\n`;
    const seen: string[] = [];
    await assert.rejects(async () => {
      for await (const content of readCompletionStream(streamOf([encoder.encode(text)]))) {
        seen.push(content);
      }
    }, /Cannot read completion stream: backend sent an error: model overloaded/);
    assert.deepEqual(seen, ["partial"]);
  });

  await t.step("error string", async () => {
    const text = 'data: {"error":"out of memory"}\n\n';
    await assert.rejects(collect(streamOf([encoder.encode(text)])), /out of memory/);
  });
});

Deno.test("readCompletionStream() throws on malformed JSON, naming the line", async () => {
  const long = `{"choices": [${"x".repeat(500)}`;
  const text = `${delta("ok")}\n\ndata: ${long}\n\n`;
  await assert.rejects(
    collect(streamOf([new TextEncoder().encode(text)])),
    (err: unknown) => {
      assert.ok(err instanceof Error);
      assert.match(err.message, /^Cannot read completion stream: malformed JSON in data line: /);
      assert.ok(err.message.endsWith(long.slice(0, 200)), "the message quotes 200 characters");
      assert.ok(!err.message.includes(long.slice(0, 201)), "and no more");
      return true;
    },
  );
});

Deno.test("readCompletionStream() reads a streamed HTTP response as it arrives", async () => {
  const encoder = new TextEncoder();
  const e = encoder.encode("é");
  const parts: (string | Uint8Array)[] = [
    ": connected\n\n",
    'data: {"choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n',
    `${delta("Bonjour")}\r\n\r\n`,
    `data: {"choices":[{"index":0,"delta":{"content":" caf`,
    e.subarray(0, 1),
    e.subarray(1),
    `"}}]}\n\n${delta(" 👋")}\n`,
    "\n",
    "data: [DONE]\n\n",
  ];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        // The pause comes first so the stream closes right after [DONE], before the reader cancels.
        for (const part of parts) {
          await new Promise((resolve) => setTimeout(resolve, 10));
          controller.enqueue(typeof part === "string" ? encoder.encode(part) : part);
        }
        controller.close();
      },
    });
    return new Response(body, { headers: { "content-type": "text/event-stream" } });
  });
  try {
    const response = await fetch(`http://127.0.0.1:${server.addr.port}/v1/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ stream: true }),
      signal: AbortSignal.timeout(5_000),
    });
    assert.equal(response.status, 200);
    assert.ok(response.body, "the response has a body");
    assert.deepEqual(await collect(response.body), ["Bonjour", " café", " 👋"]);
  } finally {
    await server.shutdown();
  }
});
