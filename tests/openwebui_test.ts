/**
 * The OpenAI-compatible door as Open WebUI, LangChain and the `openai` SDKs
 * use it: whole chats re-sent every turn, a chat id that the stored history
 * follows through edits and regenerations, background task requests, tool
 * calls, continued replies, reasoning, token counts, and streams that wait.
 * The clients are the real `openai` package and raw HTTP; the backends are
 * stand-ins that stream as vLLM and Ollama do.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { backendTest, startTestGateway, type TestGateway } from "./support/gateway.ts";
import { type RecordedRequest, type StandInAnswer } from "./support/stand_in_llm.ts";
import { eventually, within } from "./support/wait.ts";

/** Serves the gateway's app on a free loopback port. */
function serve(gateway: TestGateway) {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    gateway.app.fetch,
  );
  return { base: `http://127.0.0.1:${server.addr.port}`, stop: () => server.shutdown() };
}

/** A client that sends Open WebUI's chat id (and task name) as its connection's custom headers would. */
function openWebUi(base: string, chatId: string, task?: string) {
  return new OpenAI({
    baseURL: `${base}/v1`,
    apiKey: "unused",
    maxRetries: 0,
    timeout: 60_000,
    defaultHeaders: {
      "X-OpenWebUI-Chat-Id": chatId,
      ...(task ? { "X-OpenWebUI-Task": task } : {}),
    },
  });
}

type Message = OpenAI.Chat.Completions.ChatCompletionMessageParam;

async function storedTexts(gateway: TestGateway, chatId: string): Promise<unknown[]> {
  const res = await gateway.app.request(`/conversation?conversation_id=${chatId}`);
  if (res.status === 404) return [];
  return (await res.json()).messages.map((m: { content: unknown }) => m.content);
}

backendTest(
  "a 30-turn chat re-sent in full every turn works, and the stored history is what the client sent",
  async (_t, start) => {
    const gateway = await start();
    await gateway.startWorker();
    const http = serve(gateway);
    const openai = openWebUi(http.base, "long-chat");
    try {
      const chat: Message[] = [{ role: "system", content: "You are patient." }];
      for (let turn = 0; turn < 30; turn++) {
        // Each turn carries a long paragraph: the whole chat is far over MAX_MESSAGE_BYTES.
        chat.push({ role: "user", content: `turn ${turn}: ${"many words ".repeat(300)}` });
        const completion = await openai.chat.completions.create({
          model: "test-text-model",
          messages: chat,
        });
        chat.push({ role: "assistant", content: completion.choices[0].message.content! });
      }
      assert.ok(JSON.stringify(chat).length > 3 * gateway.config.maxMessageBytes);
      assert.deepEqual(await storedTexts(gateway, "long-chat"), chat.map((m) => m.content));
      const last = gateway.vllm.requests.at(-1)!;
      assert.equal(last.messages[0].content, "You are patient.", "system message kept");
      assert.equal(last.messages.at(-1)!.content, chat.at(-2)!.content);
    } finally {
      await http.stop();
    }
  },
);

backendTest(
  "the stored history follows the screen through an edit, a regeneration and a deletion",
  async (_t, start) => {
    let version = 0;
    const gateway = await start({
      vllmAnswer: (request) => ({ reply: `answer ${++version} to ${lastText(request)}` }),
    });
    await gateway.startWorker();
    const http = serve(gateway);
    const openai = openWebUi(http.base, "edited-chat");
    const ask = async (messages: Message[]) =>
      (await openai.chat.completions.create({ model: "test-text-model", messages })).choices[0]
        .message.content!;
    try {
      const first = await ask([{ role: "user", content: "Name a colour" }]);
      const second = await ask([
        { role: "user", content: "Name a colour" },
        { role: "assistant", content: first },
        { role: "user", content: "And a fruit" },
      ]);
      assert.deepEqual(await storedTexts(gateway, "edited-chat"), [
        "Name a colour",
        first,
        "And a fruit",
        second,
      ]);

      // Regenerate: the same chat without the last answer.
      const again = await ask([
        { role: "user", content: "Name a colour" },
        { role: "assistant", content: first },
        { role: "user", content: "And a fruit" },
      ]);
      assert.notEqual(again, second);
      assert.deepEqual(await storedTexts(gateway, "edited-chat"), [
        "Name a colour",
        first,
        "And a fruit",
        again,
      ]);

      // Edit the first message: the chat branches from there.
      const edited = await ask([{ role: "user", content: "Name a planet" }]);
      assert.deepEqual(await storedTexts(gateway, "edited-chat"), ["Name a planet", edited]);
    } finally {
      await http.stop();
    }
  },
);

backendTest(
  "Open WebUI's background tasks never touch the stored history, by header or by their shape",
  async (_t, start) => {
    const gateway = await start();
    await gateway.startWorker();
    const http = serve(gateway);
    try {
      await openWebUi(http.base, "task-chat").chat.completions.create({
        model: "test-text-model",
        messages: [{ role: "user", content: "Hello" }],
      });
      const before = await storedTexts(gateway, "task-chat");
      const title = "### Task:\nGenerate a concise, 3-5 word title with an emoji.\n" +
        "<chat_history>\nUSER: Hello\nASSISTANT: vllm says: Hello\n</chat_history>";
      // By its shape: not streamed, one user message that begins "### Task:".
      const byShape = await openWebUi(http.base, "task-chat").chat.completions.create({
        model: "test-text-model",
        messages: [{ role: "user", content: title }],
      });
      assert.match(byShape.choices[0].message.content!, /vllm says: ### Task:/);
      // By the task header a connection can send ({{TASK}}), whatever the request looks like.
      await openWebUi(http.base, "task-chat", "follow_up_generation").chat.completions.create({
        model: "test-text-model",
        messages: [{ role: "user", content: "Suggest follow-ups" }],
        stream: false,
      });
      assert.deepEqual(await storedTexts(gateway, "task-chat"), before);
      assert.equal(before.length, 2);
    } finally {
      await http.stop();
    }
  },
);

backendTest(
  "a temporary chat keeps nothing, and a chat id placeholder left unexpanded counts as none",
  async (_t, start) => {
    const gateway = await start();
    await gateway.startWorker();
    const http = serve(gateway);
    try {
      for (const id of ["local:Wk7s2", "{{CHAT_ID}}"]) {
        const reply = await openWebUi(http.base, id).chat.completions.create({
          model: "test-text-model",
          messages: [{ role: "user", content: "Hello" }],
        });
        assert.equal(reply.choices[0].message.content, "vllm says: Hello");
        const res = await gateway.app.request(
          `/conversation?conversation_id=${encodeURIComponent(id)}`,
        );
        assert.equal(res.status, 404, `nothing stored under ${id}`);
      }
    } finally {
      await http.stop();
    }
  },
);

backendTest(
  "a tool call round trip: the model calls a tool, the client answers it, the model replies",
  async (_t, start) => {
    const gateway = await start({
      vllmAnswer: (request): StandInAnswer => {
        const last = request.messages.at(-1)!;
        if (last.role === "tool") return { reply: `It is ${last.content} in Paris.` };
        return {
          reply: "",
          toolCalls: [{ name: "get_weather", arguments: '{"city":"Paris"}' }],
        };
      },
    });
    await gateway.startWorker();
    const http = serve(gateway);
    const openai = openWebUi(http.base, "tools-chat");
    const tools: OpenAI.Chat.Completions.ChatCompletionTool[] = [{
      type: "function",
      function: {
        name: "get_weather",
        description: "The weather in a city",
        parameters: { type: "object", properties: { city: { type: "string" } } },
      },
    }];
    try {
      const messages: Message[] = [{ role: "user", content: "Weather in Paris?" }];
      const first = await openai.chat.completions.create({
        model: "test-text-model",
        messages,
        tools,
      });
      const choice = first.choices[0];
      assert.equal(choice.finish_reason, "tool_calls");
      assert.equal(choice.message.content, null);
      const [call] = choice.message.tool_calls!;
      assert.equal(call.type, "function");
      assert.equal(call.type === "function" && call.function.name, "get_weather");
      assert.deepEqual(gateway.vllm.requests[0].tools, tools, "tools reach the backend");

      messages.push(choice.message, { role: "tool", tool_call_id: call.id, content: "sunny" });
      const stream = await openai.chat.completions.create({
        model: "test-text-model",
        messages,
        tools,
        stream: true,
      });
      let text = "";
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
      assert.equal(text, "It is sunny in Paris.");
      const sent = gateway.vllm.requests[1].messages;
      assert.deepEqual(sent.at(-1), { role: "tool", tool_call_id: call.id, content: "sunny" });
      assert.equal(sent.at(-2)!.tool_calls?.[0].id, call.id);
    } finally {
      await http.stop();
    }
  },
);

backendTest("a streamed tool call reaches the client as OpenAI streams one", async (_t, start) => {
  const gateway = await start({
    ollamaAnswer: () => ({
      reply: "",
      reasoning: "I should look it up.",
      toolCalls: [{ name: "lookup", arguments: '{"q":"tides"}' }],
    }),
    env: { OLLAMA_MODELS: "test-vision-model=vision+tools" },
  });
  await gateway.startWorker();
  const http = serve(gateway);
  try {
    const stream = await openWebUi(http.base, "stream-tools").chat.completions.create({
      model: "test-vision-model",
      messages: [{ role: "user", content: "When is high tide?" }],
      tools: [{ type: "function", function: { name: "lookup", parameters: {} } }],
      stream: true,
    });
    const calls: OpenAI.Chat.Completions.ChatCompletionChunk.Choice.Delta.ToolCall[] = [];
    let finish: string | null = null;
    let reasoning = "";
    for await (const chunk of stream) {
      const choice = chunk.choices[0];
      calls.push(...choice?.delta.tool_calls ?? []);
      reasoning += (choice?.delta as { reasoning_content?: string })?.reasoning_content ?? "";
      finish = choice?.finish_reason ?? finish;
    }
    assert.equal(finish, "tool_calls");
    assert.equal(reasoning, "I should look it up.", "the backend's reasoning reaches the client");
    assert.equal(calls.length, 1);
    assert.equal(calls[0].index, 0);
    assert.equal(calls[0].function?.name, "lookup");
    assert.equal(calls[0].function?.arguments, '{"q":"tides"}');
  } finally {
    await http.stop();
  }
});

backendTest(
  "continue: a last message from the assistant is continued, and stored as one message",
  async (_t, start) => {
    const gateway = await start({ vllmAnswer: () => ({ reply: " upon a time." }) });
    await gateway.startWorker();
    const http = serve(gateway);
    try {
      const completion = await openWebUi(http.base, "continue-chat").chat.completions.create({
        model: "test-text-model",
        messages: [
          { role: "user", content: "Tell me a story" },
          { role: "assistant", content: "Once" },
        ],
      });
      assert.equal(completion.choices[0].message.content, " upon a time.");
      const sent = gateway.vllm.requests[0];
      assert.equal(sent.messages.at(-1)!.role, "assistant");
      assert.equal(sent.continue_final_message, true, "vLLM continues the final message");
      assert.equal(sent.add_generation_prompt, false);
      assert.deepEqual(await storedTexts(gateway, "continue-chat"), [
        "Tell me a story",
        "Once upon a time.",
      ]);
    } finally {
      await http.stop();
    }
  },
);

backendTest("token counts come in both modes, from the backend or counted", async (t, start) => {
  const gateway = await start();
  await gateway.startWorker();
  const http = serve(gateway);
  const openai = openWebUi(http.base, "local:counts");
  try {
    await t.step("a whole reply carries usage", async () => {
      const completion = await openai.chat.completions.create({
        model: "test-text-model",
        messages: [{ role: "user", content: "count these words" }],
      });
      const usage = completion.usage!;
      assert.ok(usage.prompt_tokens > 0 && usage.completion_tokens > 0);
      assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
    });

    await t.step("a stream carries usage in its last chunk when asked", async () => {
      const stream = await openai.chat.completions.create({
        model: "test-text-model",
        messages: [{ role: "user", content: "count these words" }],
        stream: true,
        stream_options: { include_usage: true },
      });
      const chunks = [];
      for await (const chunk of stream) chunks.push(chunk);
      const last = chunks.at(-1)!;
      assert.deepEqual(last.choices, []);
      assert.ok(last.usage && last.usage.completion_tokens > 0);
      assert.ok(chunks.slice(0, -1).every((c) => !c.usage), "only the last chunk has it");
    });

    await t.step("without include_usage a stream has no usage chunk", async () => {
      const stream = await openai.chat.completions.create({
        model: "test-text-model",
        messages: [{ role: "user", content: "Hi" }],
        stream: true,
      });
      for await (const chunk of stream) assert.equal(chunk.usage ?? undefined, undefined);
    });
  } finally {
    await http.stop();
  }
});

// The keep-alives are the front door's own, the same on either backend: one run is enough.
Deno.test(
  "a stream that waits in the queue stays open, with a keep-alive comment every STREAM_KEEPALIVE_MS",
  async () => {
    // Its default, 5 s, is config_test's; here they come quickly, so the wait is short.
    const gateway = await startTestGateway("embedded", { env: { STREAM_KEEPALIVE_MS: "200" } });
    const http = serve(gateway);
    try {
      const res = await fetch(`${http.base}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: "test-text-model",
          messages: [{ role: "user", content: "worth the wait" }],
          stream: true,
        }),
      });
      assert.equal(res.status, 200);
      // No worker yet: the job waits in the queue through three keep-alives, then one starts.
      const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      let worker: Promise<unknown> | undefined;
      await within(
        (async () => {
          while (true) {
            const { value, done } = await reader.read();
            if (done) break;
            text += value;
            if (!worker && (text.match(/^: queued$/gm) ?? []).length >= 3) {
              worker = gateway.startWorker();
            }
          }
        })(),
        "the streamed reply to end once a worker started",
        120_000,
      );
      await worker;
      // Every interval while queued: a proxy that closes idle connections keeps this one open.
      assert.ok(
        (text.match(/^: queued$/gm) ?? []).length >= 3,
        `keep-alives while queued:\n${text}`,
      );
      const content = text.split("\n\n").filter((e) => e.startsWith("data: {"))
        .map((e) => JSON.parse(e.slice(6)).choices[0]?.delta.content ?? "").join("");
      assert.equal(content, "vllm says: worth the wait");
      assert.match(text, /data: \[DONE\]\n\n$/);
      await eventually(() => gateway.vllm.requests.length === 1, "the one call to the backend");
    } finally {
      await http.stop();
      await gateway.stop();
    }
  },
);

function lastText(request: RecordedRequest): string {
  const last = request.messages.at(-1)!;
  return typeof last.content === "string" ? last.content : "";
}

backendTest(
  "a 2 MB base64 image reaches Ollama as a data URL, and records keep a reference, not the image",
  async (_t, start) => {
    const gateway = await start();
    await gateway.startWorker();
    const http = serve(gateway);
    // A PNG signature, then 2 MB: what the worker checks of an image is its type and size.
    const image = new Uint8Array(2 * 1024 * 1024);
    image.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    for (let i = 8; i < image.length; i++) image[i] = i % 251;
    const encoded = encodeBase64(image);
    try {
      const openai = openWebUi(http.base, "big-image");
      const completion = await openai.chat.completions.create({
        model: "test-vision-model",
        messages: [{
          role: "user",
          content: [
            { type: "text", text: "What is in this picture?" },
            { type: "image_url", image_url: { url: `data:image/png;base64,${encoded}` } },
          ],
        }],
      });
      assert.equal(completion.choices[0].message.content, "ollama says: What is in this picture?");
      const sent = gateway.ollama.requests[0].messages[0].content as {
        type: string;
        image_url?: { url: string };
      }[];
      assert.equal(sent[1].image_url?.url, `data:image/png;base64,${encoded}`, "every byte");

      const stored = await (await gateway.app.request("/conversation?conversation_id=big-image"))
        .json();
      const storedUrl = stored.messages[0].content[1].image_url.url as string;
      assert.match(storedUrl, /^gateway-blob:_\/[0-9a-f]{64}\.png$/, "a reference, never base64");
      const records = await gateway.jobRecords();
      assert.ok(
        records.every((job) => JSON.stringify(job).length < 20_000),
        "no record holds the image",
      );
    } finally {
      await http.stop();
    }
  },
);

function encodeBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}
