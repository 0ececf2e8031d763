/**
 * How a `POST /v1/responses` body becomes a chat job's parts, and what is
 * refused by name: the parser and the field translation on their own.
 */
import assert from "node:assert/strict";
import { ApiError } from "../lib/http/errors.ts";
import { parseResponsesRequest } from "../lib/http/responses_request.ts";
import { chatParams, echoedFields } from "../lib/http/responses_params.ts";
import { toolCallProblems } from "../lib/http/responses_input.ts";

/** The problems a refused body is refused for, as `param: message` lines. */
function problemsOf(body: unknown): string[] {
  try {
    parseResponsesRequest(body);
  } catch (err) {
    assert.ok(err instanceof ApiError, String(err));
    assert.equal(err.status, 400);
    return (err.details ?? []).map((p) => `${p.param}: ${p.message}`);
  }
  assert.fail(`the body was taken: ${JSON.stringify(body)}`);
}

Deno.test("a string input is one user message, and the request's defaults are OpenAI's", () => {
  const request = parseResponsesRequest({ model: "m", input: "Hello" });
  assert.deepEqual(request.input.messages, [{ role: "user", content: "Hello" }]);
  assert.equal(request.store, true);
  assert.equal(request.stream, false);
  assert.deepEqual(request.params, {});
});

Deno.test("input items become the chat a backend takes", () => {
  const request = parseResponsesRequest({
    input: [
      { role: "developer", content: "Be brief." },
      {
        role: "user",
        content: [
          { type: "input_text", text: "What is this?" },
          { type: "input_image", image_url: "https://example.com/cat.png", detail: "auto" },
        ],
      },
      {
        type: "reasoning",
        id: "rs_1",
        summary: [{ type: "summary_text", text: "Looks at it." }],
      },
      {
        type: "message",
        id: "msg_1",
        role: "assistant",
        status: "completed",
        content: [{ type: "output_text", text: "Let me look it up.", annotations: [] }],
      },
      { type: "function_call", call_id: "call_1", name: "lookup", arguments: '{"q":"cat"}' },
      { type: "function_call_output", call_id: "call_1", output: "a cat" },
    ],
  });
  assert.deepEqual(request.input.messages, [
    { role: "system", content: "Be brief." },
    {
      role: "user",
      content: [
        { type: "text", text: "What is this?" },
        { type: "image_url", image_url: { url: "https://example.com/cat.png" } },
      ],
    },
    {
      role: "assistant",
      content: "Let me look it up.",
      reasoning_content: "Looks at it.",
      tool_calls: [{
        id: "call_1",
        type: "function",
        function: { name: "lookup", arguments: '{"q":"cat"}' },
      }],
    },
    { role: "tool", tool_call_id: "call_1", content: "a cat" },
  ]);
  assert.deepEqual(request.input.origins, ["input[0]", "input[1]", "input[3]", "input[5]"]);
});

Deno.test("Responses fields become a chat completion's, and are echoed back as they came", () => {
  const request = parseResponsesRequest({
    input: "Hi",
    tools: [{
      type: "function",
      name: "get_weather",
      description: "The weather in a city",
      parameters: { type: "object", properties: { city: { type: "string" } } },
      strict: true,
    }],
    tool_choice: { type: "function", name: "get_weather" },
    parallel_tool_calls: false,
    temperature: 0.3,
    top_p: 0.9,
    max_output_tokens: 64,
    text: { format: { type: "json_schema", name: "w", schema: { type: "object" }, strict: true } },
    reasoning: { effort: "low", summary: "auto" },
    service_tier: "flex",
    prompt_cache_key: "k",
    include: ["reasoning.encrypted_content"],
  });
  assert.deepEqual(request.params, {
    tools: [{
      type: "function",
      function: {
        name: "get_weather",
        description: "The weather in a city",
        parameters: { type: "object", properties: { city: { type: "string" } } },
        strict: true,
      },
    }],
    tool_choice: { type: "function", function: { name: "get_weather" } },
    parallel_tool_calls: false,
    temperature: 0.3,
    top_p: 0.9,
    max_tokens: 64,
    response_format: {
      type: "json_schema",
      json_schema: { name: "w", schema: { type: "object" }, strict: true },
    },
    reasoning_effort: "low",
  });
  const echoed = echoedFields(request.params);
  assert.deepEqual(echoed.tools[0], {
    type: "function",
    name: "get_weather",
    description: "The weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } } },
    strict: true,
  });
  assert.deepEqual(echoed.tool_choice, { type: "function", name: "get_weather" });
  assert.deepEqual(echoed.text.format, {
    type: "json_schema",
    name: "w",
    schema: { type: "object" },
    strict: true,
  });
  assert.equal(echoed.max_output_tokens, 64);
  assert.equal(echoed.reasoning.effort, "low");
  assert.deepEqual(chatParams({}), {});
});

Deno.test("no tools is no tools: an empty list, and a choice among none, are left out", () => {
  const request = parseResponsesRequest({
    input: "Hi",
    tools: [],
    tool_choice: "auto",
    parallel_tool_calls: false,
  });
  assert.deepEqual(request.params, {});
  const required = parseResponsesRequest({ input: "Hi", tools: [], tool_choice: "required" });
  assert.deepEqual(required.params, { tool_choice: "required" }, "the backend check refuses it");
});

Deno.test("what the gateway cannot do is refused by name, every problem at once", () => {
  assert.deepEqual(
    problemsOf({
      input: [{ role: "user", content: [{ type: "input_file", file_id: "file-1" }] }],
      tools: [{ type: "web_search" }, { type: "function", name: "f", defer_loading: true }],
      background: true,
      top_logprobs: 2,
      truncation: "disabled",
      text: { verbosity: "low" },
      prompt: { id: "pmpt_1" },
      frobnicate: 1,
      constructor: 1,
    }).map((line) => line.split(":")[0]).sort(),
    [
      "background",
      "top_logprobs",
      "text.verbosity",
      "truncation",
      "input[0].content[0].type",
      "prompt",
      "frobnicate",
      "constructor",
      "tools[0].type",
      "tools[1].defer_loading",
    ].sort(),
  );
});

Deno.test("an input that cannot be answered is refused, naming the item", () => {
  assert.deepEqual(problemsOf({ input: [] }), ["input: must hold at least one item"]);
  assert.deepEqual(problemsOf({}), ["input: is required"]);
  assert.deepEqual(
    problemsOf({ input: [{ role: "user", content: "Hi" }, { role: "assistant", content: "Hey" }] }),
    [
      "input[1]: the last item must be a user message or a function_call_output: it is what the model answers",
    ],
  );
  assert.deepEqual(
    problemsOf({
      input: [{ role: "user", content: "Hi" }, {
        type: "function_call",
        call_id: "c",
        name: "f",
        arguments: "{}",
      }],
    }),
    ["input[1]: a function_call must be followed by its function_call_output"],
  );
  assert.deepEqual(
    problemsOf({
      input: [
        { role: "system", content: [{ type: "input_image", image_url: "https://x.test/a.png" }] },
        {
          type: "item_reference",
          id: "msg_1",
        },
        { type: "web_search_call", id: "ws_1" },
        { role: "user", content: "Hi" },
      ],
    }).map((line) => line.split(":")[0]),
    ["input[0].content[0].type", "input[1].type", "input[2].type"],
  );
  assert.deepEqual(
    problemsOf({
      input: [{ role: "user", content: [{ type: "input_image", file_id: "file-1" }] }],
    }),
    [
      "input[0].content[0].file_id: files are not kept by this gateway: send the image as image_url (an https or data: URL)",
    ],
  );
});

Deno.test("function calls and their outputs must pair up", () => {
  const call = (id: string) => ({
    role: "assistant" as const,
    content: null,
    tool_calls: [{ id, type: "function" as const, function: { name: "f", arguments: "{}" } }],
  });
  assert.deepEqual(
    toolCallProblems([
      { role: "user", content: "Hi" },
      call("a"),
      { role: "user", content: "never mind" },
      { role: "tool", tool_call_id: "b", content: "x" },
    ], ["previous_response_id", "previous_response_id", "input[0]", "input[1]"]),
    [
      {
        param: "input",
        message: 'function call "a" needs its function_call_output before the next message',
      },
      { param: "input[1].call_id", message: 'no function_call just before it has call_id "b"' },
    ],
  );
});

Deno.test("conversation and metadata are checked, and conversation excludes a chain", () => {
  const request = parseResponsesRequest({
    input: "Hi",
    conversation: { id: "  trip-planning " },
    metadata: { user: "ada" },
  });
  assert.equal(request.conversation, "trip-planning");
  assert.deepEqual(request.metadata, { user: "ada" });
  assert.deepEqual(
    problemsOf({
      input: "Hi",
      conversation: "c1",
      previous_response_id: "resp_x",
      store: false,
      metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, "v"])),
    }).map((line) => line.split(":")[0]),
    ["metadata", "previous_response_id", "store"],
  );
});
