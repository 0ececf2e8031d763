/** Anthropic's Messages request, checked and translated into what every backend takes. */
import assert from "node:assert/strict";
import { ApiError, type FieldProblem } from "../lib/http/errors.ts";
import { parseCountRequest, parseMessagesRequest } from "../lib/http/anthropic_translation.ts";
import { pngDataUrl } from "./support/image_server.ts";

const PNG_BASE64 = pngDataUrl().slice("data:image/png;base64,".length);

function problemsOf(body: unknown): FieldProblem[] {
  try {
    parseMessagesRequest(body);
  } catch (err) {
    assert.ok(err instanceof ApiError, String(err));
    assert.equal(err.status, 400);
    return err.details ?? [];
  }
  assert.fail("the request was accepted");
}

const base = { model: "m", max_tokens: 100 };
const hi = [{ role: "user", content: "Hi" }];

Deno.test("a whole agent's chat becomes system, user, assistant with tool calls, tool and user messages", () => {
  const request = parseMessagesRequest({
    ...base,
    system: [{ type: "text", text: "You are terse.", cache_control: { type: "ephemeral" } }, {
      type: "text",
      text: "Use tools.",
    }],
    messages: [
      {
        role: "user",
        content: [
          { type: "text", text: "What is in it?" },
          { type: "image", source: { type: "base64", media_type: "image/png", data: PNG_BASE64 } },
        ],
      },
      {
        role: "assistant",
        content: [
          { type: "thinking", thinking: "Look closer.", signature: "sig" },
          { type: "text", text: "Let me zoom." },
          { type: "tool_use", id: "toolu_1", name: "zoom", input: { factor: 2 } },
          { type: "tool_use", id: "toolu_2", name: "crop", input: {}, caller: { type: "direct" } },
        ],
      },
      {
        role: "user",
        content: [
          {
            type: "tool_result",
            tool_use_id: "toolu_1",
            content: [{ type: "text", text: "zoomed" }, {
              type: "image",
              source: { type: "url", url: "https://example.com/zoomed.png" },
            }],
          },
          { type: "tool_result", tool_use_id: "toolu_2", content: "no such area", is_error: true },
          { type: "text", text: "Now?", citations: null },
        ],
      },
    ],
  });
  assert.deepEqual(request.messages, [
    { role: "system", content: "You are terse.\n\nUse tools." },
    {
      role: "user",
      content: [
        { type: "text", text: "What is in it?" },
        { type: "image_url", image_url: { url: pngDataUrl() } },
      ],
    },
    {
      role: "assistant",
      content: "Let me zoom.",
      tool_calls: [
        { id: "toolu_1", type: "function", function: { name: "zoom", arguments: '{"factor":2}' } },
        { id: "toolu_2", type: "function", function: { name: "crop", arguments: "{}" } },
      ],
      reasoning_content: "Look closer.",
    },
    { role: "tool", tool_call_id: "toolu_1", content: "zoomed" },
    { role: "tool", tool_call_id: "toolu_2", content: "Error: no such area" },
    {
      role: "user",
      content: [
        { type: "text", text: "Images from the result of tool call toolu_1:" },
        { type: "image_url", image_url: { url: "https://example.com/zoomed.png" } },
        { type: "text", text: "Now?" },
      ],
    },
  ]);
  assert.equal(request.lastIndex, 2);
  assert.equal(request.lastTurn, 3, "two tool results and the rest");
  assert.deepEqual(request.params, { max_tokens: 100 });
  assert.equal(request.stream, false);
  assert.equal(request.showThinking, false);
});

Deno.test("sampling, stop sequences, tools and output settings become OpenAI's fields", () => {
  const tools = [{
    name: "get_weather",
    description: "Weather",
    input_schema: { type: "object", properties: { city: { type: "string" } } },
    strict: true,
    cache_control: { type: "ephemeral" },
  }];
  const request = parseMessagesRequest({
    ...base,
    messages: hi,
    stream: true,
    temperature: 0.3,
    top_p: 0.9,
    top_k: 40,
    stop_sequences: ["END", "\n\nHuman:"],
    metadata: { user_id: "u-1" },
    tools,
    tool_choice: { type: "tool", name: "get_weather", disable_parallel_tool_use: true },
    output_config: { effort: "low", format: { type: "json_schema", schema: { type: "object" } } },
  });
  assert.deepEqual(request.params, {
    max_tokens: 100,
    stop: ["END", "\n\nHuman:"],
    temperature: 0.3,
    top_p: 0.9,
    top_k: 40,
    tools: [{
      type: "function",
      function: {
        name: "get_weather",
        description: "Weather",
        parameters: tools[0].input_schema,
        strict: true,
      },
    }],
    tool_choice: { type: "function", function: { name: "get_weather" } },
    parallel_tool_calls: false,
    reasoning_effort: "low",
    response_format: {
      type: "json_schema",
      json_schema: { name: "output", schema: { type: "object" } },
    },
  });
  assert.equal(request.stream, true);
  assert.deepEqual(request.stopSequences, ["END", "\n\nHuman:"]);
});

Deno.test("tool_choice any asks for a call; none sends no tools at all", () => {
  const tools = [{ name: "t", input_schema: { type: "object" } }];
  const params = (tool_choice: unknown) =>
    parseMessagesRequest({ ...base, messages: hi, tools, tool_choice }).params;
  assert.equal(params({ type: "any" }).tool_choice, "required");
  assert.equal(params({ type: "auto" }).tool_choice, "auto");
  assert.deepEqual(params({ type: "none" }), { max_tokens: 100 });
});

Deno.test("thinking is shown when enabled or adaptive, unless its display is omitted", () => {
  const shown = (thinking: unknown) =>
    parseMessagesRequest({ ...base, max_tokens: 4000, messages: hi, thinking }).showThinking;
  assert.equal(shown({ type: "enabled", budget_tokens: 1024 }), true);
  assert.equal(shown({ type: "adaptive" }), true);
  assert.equal(shown({ type: "adaptive", display: "omitted" }), false);
  assert.equal(shown({ type: "disabled" }), false);
});

Deno.test("a field or block the gateway cannot honour is named, never dropped", () => {
  assert.deepEqual(problemsOf({ ...base, messages: hi, service_tier: "auto", container: "c" }), [
    { param: "service_tier", message: "is not supported by this gateway" },
    { param: "container", message: "is not supported by this gateway" },
  ]);
  assert.deepEqual(
    problemsOf({
      ...base,
      messages: [{ role: "user", content: [{ type: "text", text: "x", extra: 1 }] }],
    }),
    [{ param: "messages[0].content[0].extra", message: "is not supported by this gateway" }],
  );
  assert.deepEqual(
    problemsOf({
      ...base,
      messages: [{ role: "user", content: [{ type: "document", source: {} }] }],
    }),
    [{
      param: "messages[0].content[0].type",
      message:
        '"document" blocks are not supported by this gateway: use "text", "image", "tool_use", "tool_result" or "thinking"',
    }],
  );
  assert.deepEqual(
    problemsOf({ ...base, messages: hi, tools: [{ type: "bash_20250124", name: "bash" }] }),
    [
      { param: "tools[0].input_schema", message: "is required" },
      {
        param: "tools[0].type",
        message:
          '"bash_20250124" tools (Anthropic\'s own, run on its servers) are not supported by this gateway: use a custom tool: { "name", "description", "input_schema" }',
      },
    ],
  );
  assert.deepEqual(
    problemsOf({ ...base, messages: hi, output_config: { effort: "max" } }),
    [{
      param: "output_config.effort",
      message: 'must be "low", "medium" or "high": the backends take no higher effort',
    }],
  );
});

Deno.test("required fields, ranges and images are checked field by field", () => {
  assert.deepEqual(problemsOf({ messages: hi }), [
    { param: "model", message: "is required" },
    { param: "max_tokens", message: "is required" },
  ]);
  assert.deepEqual(problemsOf({ ...base, messages: hi, temperature: 2, top_k: 0 }), [
    { param: "temperature", message: "must be between 0 and 1" },
    { param: "top_k", message: "must be positive" },
  ]);
  assert.deepEqual(problemsOf({ ...base, messages: [] }), [
    { param: "messages", message: "must hold at least one message" },
  ]);
  const image = (source: unknown) => ({
    ...base,
    messages: [{ role: "user", content: [{ type: "image", source }] }],
  });
  assert.deepEqual(
    problemsOf(image({ type: "base64", media_type: "image/png", data: "ab-_" })),
    [{
      param: "messages[0].content[0].source.data",
      message: "must be standard base64 (not base64url)",
    }],
  );
  assert.deepEqual(problemsOf(image({ type: "file", file_id: "f" })), [{
    param: "messages[0].content[0].source.type",
    message: '"file" image sources are not supported by this gateway: use "base64" or "url"',
  }]);
  const nine = Array.from({ length: 9 }, () => ({
    type: "image",
    source: { type: "base64", media_type: "image/png", data: PNG_BASE64 },
  }));
  assert.deepEqual(problemsOf({ ...base, messages: [{ role: "user", content: nine }] }), [
    { param: "messages[0].content", message: "must hold at most 8 images, got 9" },
  ]);
});

Deno.test("what the schema cannot see is checked too: roles, the last message, tool choice, budget", () => {
  assert.deepEqual(
    problemsOf({
      ...base,
      messages: [
        {
          role: "assistant",
          content: [{ type: "image", source: { type: "url", url: "https://a/b" } }],
        },
        { role: "user", content: [{ type: "tool_use", id: "t", name: "n", input: {} }] },
        { role: "system", content: "last" },
      ],
    }),
    [
      {
        param: "messages[0].content[0].type",
        message: '"image" blocks cannot be in assistant messages',
      },
      {
        param: "messages[1].content[0].type",
        message: '"tool_use" blocks cannot be in user messages',
      },
      {
        param: "messages[2].role",
        message:
          'must be "user" or "assistant" (to continue its text): the last message is the one answered',
      },
    ],
  );
  assert.deepEqual(
    problemsOf({
      ...base,
      messages: hi,
      tools: [{ name: "a", input_schema: {} }],
      tool_choice: { type: "tool", name: "b" },
    }),
    [{ param: "tool_choice.name", message: 'must name one of the tools, got "b"' }],
  );
  assert.deepEqual(
    problemsOf({ ...base, messages: hi, thinking: { type: "enabled", budget_tokens: 1024 } }),
    [{ param: "thinking.budget_tokens", message: "must be less than max_tokens (100)" }],
  );
});

Deno.test("count_tokens takes the prompt's fields and no max_tokens", () => {
  const request = parseCountRequest({
    model: "m",
    system: "Be brief.",
    messages: hi,
    tools: [{ name: "a", input_schema: { type: "object" } }],
  });
  assert.deepEqual(request, {
    model: "m",
    messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi" }],
    tools: [{ type: "function", function: { name: "a", parameters: { type: "object" } } }],
  });
  assert.throws(
    () => parseCountRequest({ model: "m", messages: hi, max_tokens: 5 }),
    (err: unknown) =>
      err instanceof ApiError && err.details?.[0].param === "max_tokens" &&
      err.details[0].message === "is not supported by this gateway",
  );
});
