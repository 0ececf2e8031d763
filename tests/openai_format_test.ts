import assert from "node:assert/strict";
import { ApiError, type FieldProblem } from "../lib/errors.ts";
import {
  chunkObject,
  completionObject,
  modelList,
  parseCompletionRequest,
  readCompletionStream,
} from "../lib/openai_format.ts";

/** The problems a rejected body yields; fails the test if the body is accepted. */
function problemsOf(body: unknown): FieldProblem[] {
  try {
    parseCompletionRequest(body);
  } catch (err) {
    assert.ok(err instanceof ApiError, "the error is an ApiError");
    assert.equal(err.status, 400);
    assert.equal(err.code, "invalid_field");
    return err.details ?? [];
  }
  assert.fail("the body was accepted");
}

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

Deno.test("a plain request is parsed with defaults", () => {
  const request = parseCompletionRequest({
    model: "llama3",
    messages: [
      { role: "system", content: "Be brief" },
      { role: "user", content: "Hi" },
    ],
  });
  assert.deepEqual(request, {
    model: "llama3",
    messages: [
      { role: "system", content: "Be brief" },
      { role: "user", content: "Hi" },
    ],
    stream: false,
    params: {},
  });
});

Deno.test("a request without a model is accepted", () => {
  const request = parseCompletionRequest({ messages: [{ role: "user", content: "Hi" }] });
  assert.equal(request.model, undefined);
  assert.equal("model" in request, false);
});

Deno.test("content parts with an image become our parts, dropping unknown fields", () => {
  const request = parseCompletionRequest({
    model: "llava",
    messages: [{
      role: "user",
      name: "ada",
      cache_hint: true,
      content: [
        { type: "text", text: "What is this?", annotations: [] },
        { type: "image_url", image_url: { url: "data:image/png;base64,AAAA", detail: "high" } },
      ],
    }],
  });
  assert.deepEqual(request.messages, [{
    role: "user",
    content: [
      { type: "text", text: "What is this?" },
      { type: "image_url", image_url: { url: "data:image/png;base64,AAAA" } },
    ],
  }]);
});

Deno.test("extra top-level fields are tolerated and sampling settings are kept", () => {
  const request = parseCompletionRequest({
    model: "llama3",
    messages: [{ role: "user", content: "Hi" }],
    stream: true,
    stream_options: { include_usage: true },
    user: "user-42",
    seed: 7,
    frequency_penalty: 0.5,
    temperature: 0.2,
    top_p: 0.9,
    max_tokens: 256,
    stop: ["\n\n", "END"],
  });
  assert.deepEqual(request, {
    model: "llama3",
    messages: [{ role: "user", content: "Hi" }],
    stream: true,
    params: { temperature: 0.2, top_p: 0.9, max_tokens: 256, stop: ["\n\n", "END"] },
  });
});

Deno.test("max_completion_tokens becomes max_tokens unless max_tokens is given", () => {
  const messages = [{ role: "user", content: "Hi" }];
  assert.deepEqual(
    parseCompletionRequest({ messages, max_completion_tokens: 100 }).params,
    { max_tokens: 100 },
  );
  assert.deepEqual(
    parseCompletionRequest({ messages, max_tokens: 50, max_completion_tokens: 100 }).params,
    { max_tokens: 50 },
  );
});

Deno.test("a developer message becomes a system message", () => {
  const request = parseCompletionRequest({
    messages: [{ role: "developer", content: "Answer in French" }, {
      role: "user",
      content: "Hi",
    }],
  });
  assert.deepEqual(request.messages[0], { role: "system", content: "Answer in French" });
});

Deno.test("a bad request lists every problem with its field", async (t) => {
  await t.step("top-level fields", () => {
    const problems = problemsOf({ messages: "hi", temperature: 5 });
    assert.deepEqual(problems, [
      { param: "messages", message: "must be an array of messages" },
      { param: "temperature", message: "must be between 0 and 2" },
    ]);
  });

  await t.step("nested fields", () => {
    const problems = problemsOf({
      messages: [
        {
          role: "user",
          content: [{ type: "text", text: 3 }, { type: "image_url", image_url: {} }],
        },
        { role: "robot", content: "x" },
        { role: "user" },
      ],
      top_p: 2,
      max_tokens: 1.5,
      stop: ["a", "b", "c", "d", "e"],
    });
    assert.deepEqual(problems.map((p) => p.param), [
      "messages[0].content[0].text",
      "messages[0].content[1].image_url.url",
      "messages[1].role",
      "messages[2].content",
      "top_p",
      "max_tokens",
      "stop",
    ]);
    assert.equal(problems[1].message, "is required");
    assert.equal(problems[3].message, "is required");
  });

  await t.step("the whole body", () => {
    assert.deepEqual(problemsOf([]), [{ param: "body", message: "must be a JSON object" }]);
    assert.deepEqual(problemsOf({ messages: [] }), [
      { param: "messages", message: "must hold at least one message" },
    ]);
  });
});

Deno.test("a conversation whose last message is not from the user is rejected", () => {
  const problems = problemsOf({
    messages: [{ role: "user", content: "Hi" }, { role: "assistant", content: "Hello" }],
  });
  assert.equal(problems.length, 1);
  assert.equal(problems[0].param, "messages[1].role");
  assert.match(problems[0].message, /must be "user"/);
});

Deno.test("the last-message rule is reported alongside other problems", () => {
  const problems = problemsOf({
    messages: [{ role: "user", content: 5 }, { role: "system", content: "x" }],
  });
  assert.deepEqual(problems.map((p) => p.param), ["messages[0].content", "messages[1].role"]);
});

Deno.test("tool messages and null content are rejected", () => {
  const problems = problemsOf({
    messages: [
      { role: "user", content: "What is the weather?" },
      { role: "assistant", content: null, tool_calls: [{ id: "call_1" }] },
      { role: "tool", content: "Sunny", tool_call_id: "call_1" },
      { role: "user", content: "Thanks" },
    ],
  });
  assert.deepEqual(problems, [
    { param: "messages[1].content", message: "must not be null: tool calls are not supported" },
    { param: "messages[2].role", message: "tool messages are not supported" },
  ]);
});

Deno.test("the error message summarises the problems", () => {
  assert.throws(
    () => parseCompletionRequest({ messages: [{ role: "tool", content: "x" }] }),
    (err: unknown) =>
      err instanceof ApiError &&
      err.message === "Invalid request: messages[0].role: tool messages are not supported" &&
      err.param === "messages[0].role",
  );
});

Deno.test("a completion object has OpenAI's shape", () => {
  assert.deepEqual(
    completionObject({ id: "chatcmpl-1", model: "llama3", content: "Hello", created: 1700000000 }),
    {
      id: "chatcmpl-1",
      object: "chat.completion",
      created: 1700000000,
      model: "llama3",
      choices: [{
        index: 0,
        message: { role: "assistant", content: "Hello" },
        finish_reason: "stop",
        logprobs: null,
      }],
    },
  );
  const before = Math.floor(Date.now() / 1000);
  const object = completionObject({
    id: "chatcmpl-2",
    model: "m",
    content: "",
    finishReason: "length",
  });
  assert.ok(object.created >= before && object.created <= before + 1, "created is now");
  assert.equal(object.choices[0].finish_reason, "length");
});

Deno.test("a chunk object has OpenAI's shape", () => {
  const base = { id: "chatcmpl-1", model: "llama3", created: 1700000000 };
  assert.deepEqual(chunkObject({ ...base, delta: { role: "assistant", content: "He" } }), {
    ...base,
    object: "chat.completion.chunk",
    choices: [{
      index: 0,
      delta: { role: "assistant", content: "He" },
      finish_reason: null,
      logprobs: null,
    }],
  });
  const last = chunkObject({ ...base, delta: {}, finishReason: "stop" });
  assert.deepEqual(last.choices[0].delta, {});
  assert.equal(last.choices[0].finish_reason, "stop");
});

Deno.test("a model list has OpenAI's shape", () => {
  assert.deepEqual(modelList([{ id: "llama3", owned_by: "vllm" }], 1700000000), {
    object: "list",
    data: [{ id: "llama3", object: "model", created: 1700000000, owned_by: "vllm" }],
  });
});

Deno.test("a stream is read the same however its bytes are split", async (t) => {
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

Deno.test("a data field split over several lines is joined", async () => {
  const text = 'data: {"choices":\ndata: [{"delta":{"content":"joined"}}]}\n\n';
  assert.deepEqual(await collect(streamOf([new TextEncoder().encode(text)])), ["joined"]);
});

Deno.test("a stream that closes without [DONE] still yields its deltas", async () => {
  const text = `${delta("a")}\n\n${delta("b")}`;
  assert.deepEqual(await collect(streamOf([new TextEncoder().encode(text)])), ["a", "b"]);
});

Deno.test("reading stops and the body is cancelled at [DONE]", async () => {
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

Deno.test("an error event in the stream throws with its message", async (t) => {
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

Deno.test("malformed JSON in a data line throws naming the line", async () => {
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

Deno.test("a streamed HTTP response is read as it arrives", async () => {
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
