import assert from "node:assert/strict";
import { ApiError, type FieldProblem } from "../lib/http/errors.ts";
import { parseCompletionRequest } from "../lib/http/completion_request.ts";

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

Deno.test("parseCompletionRequest() parses a plain request with defaults", () => {
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
    includeUsage: false,
    params: {},
  });
});

Deno.test("parseCompletionRequest() accepts a request without a model", () => {
  const request = parseCompletionRequest({ messages: [{ role: "user", content: "Hi" }] });
  assert.equal(request.model, undefined);
  assert.equal("model" in request, false);
});

Deno.test("parseCompletionRequest() turns content parts with an image into ours, keeping the name and dropping unknown fields", () => {
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
    name: "ada",
    content: [
      { type: "text", text: "What is this?" },
      { type: "image_url", image_url: { url: "data:image/png;base64,AAAA" } },
    ],
  }]);
});

Deno.test("parseCompletionRequest() passes every other field through to the backend", () => {
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
    includeUsage: true,
    params: {
      user: "user-42",
      seed: 7,
      frequency_penalty: 0.5,
      temperature: 0.2,
      top_p: 0.9,
      max_tokens: 256,
      stop: ["\n\n", "END"],
    },
  });
});

Deno.test("parseCompletionRequest() passes tools, response formats and backend options through", () => {
  const tools = [{
    type: "function",
    function: { name: "get_weather", description: "Weather now", parameters: { type: "object" } },
  }];
  const request = parseCompletionRequest({
    messages: [{ role: "user", content: "Weather in Paris?" }],
    tools,
    tool_choice: "auto",
    response_format: { type: "json_object" },
    logit_bias: { "1234": -100 },
    reasoning_effort: "low",
    top_k: 40,
    num_ctx: 8192,
  });
  assert.deepEqual(request.params, {
    tools,
    tool_choice: "auto",
    response_format: { type: "json_object" },
    logit_bias: { "1234": -100 },
    reasoning_effort: "low",
    top_k: 40,
    num_ctx: 8192,
  });
});

Deno.test("parseCompletionRequest() accepts a tool call round trip and a reply to continue", () => {
  const call = { id: "call_1", type: "function", function: { name: "f", arguments: "{}" } };
  const request = parseCompletionRequest({
    messages: [
      { role: "user", content: "What is the weather?" },
      { role: "assistant", content: null, tool_calls: [call] },
      { role: "tool", content: "Sunny", tool_call_id: "call_1" },
      { role: "user", content: "Write a poem about it" },
      { role: "assistant", content: "Sun on the" },
    ],
  });
  assert.deepEqual(request.messages.slice(1, 3), [
    { role: "assistant", content: null, tool_calls: [call] },
    { role: "tool", content: "Sunny", tool_call_id: "call_1" },
  ]);
  assert.equal(request.messages.at(-1)!.role, "assistant", "the reply to continue is last");
  const toolLast = parseCompletionRequest({
    messages: [
      { role: "user", content: "Weather?" },
      { role: "assistant", tool_calls: [call] },
      { role: "tool", content: "Sunny", tool_call_id: "call_1" },
    ],
  });
  assert.equal(toolLast.messages[1].content, null, "a content left out reads as null");
});

Deno.test("parseCompletionRequest() refuses n other than 1, naming it", () => {
  const problems = problemsOf({ messages: [{ role: "user", content: "Hi" }], n: 3 });
  assert.deepEqual(problems.map((p) => p.param), ["n"]);
  assert.match(problems[0].message, /one choice/);
});

Deno.test("parseCompletionRequest() refuses log probabilities it cannot return, and takes them off", () => {
  const problems = problemsOf({
    messages: [{ role: "user", content: "Hi" }],
    logprobs: true,
    top_logprobs: 5,
  });
  assert.deepEqual(problems.map((p) => p.param), ["logprobs", "top_logprobs"]);
  assert.match(problems[0].message, /not returned by this gateway/);
  const off = parseCompletionRequest({
    messages: [{ role: "user", content: "Hi" }],
    logprobs: false,
    top_logprobs: 0,
  });
  assert.deepEqual(off.params, { logprobs: false, top_logprobs: 0 });
});

Deno.test("parseCompletionRequest() maps max_completion_tokens to max_tokens unless max_tokens is given", () => {
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

Deno.test("parseCompletionRequest() turns a developer message into a system message", () => {
  const request = parseCompletionRequest({
    messages: [{ role: "developer", content: "Answer in French" }, {
      role: "user",
      content: "Hi",
    }],
  });
  assert.deepEqual(request.messages[0], { role: "system", content: "Answer in French" });
});

Deno.test("parseCompletionRequest() lists every problem of a bad request with its field", async (t) => {
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

Deno.test("parseCompletionRequest() rejects a conversation whose last message is a system message", () => {
  const problems = problemsOf({
    messages: [{ role: "user", content: "Hi" }, { role: "system", content: "Be brief" }],
  });
  assert.equal(problems.length, 1);
  assert.equal(problems[0].param, "messages[1].role");
  assert.match(problems[0].message, /must be "user", "tool" or "assistant"/);
});

Deno.test("parseCompletionRequest() reports the last-message rule alongside other problems", () => {
  const problems = problemsOf({
    messages: [{ role: "user", content: 5 }, { role: "system", content: "x" }],
  });
  assert.deepEqual(problems.map((p) => p.param), ["messages[0].content", "messages[1].role"]);
});

Deno.test("parseCompletionRequest() rejects malformed tool calls, tool messages without their call, and null content", () => {
  const problems = problemsOf({
    messages: [
      { role: "user", content: null },
      { role: "assistant", content: null, tool_calls: [{ id: "call_1" }] },
      { role: "tool", content: "Sunny" },
      { role: "user", content: "Thanks" },
    ],
  });
  assert.deepEqual(problems.map((p) => p.param), [
    "messages[1].tool_calls[0].type",
    "messages[1].tool_calls[0].function",
  ]);
  assert.deepEqual(
    problemsOf({
      messages: [
        { role: "user", content: null },
        { role: "tool", content: "Sunny" },
        { role: "user", content: "Thanks" },
      ],
    }),
    [
      {
        param: "messages[0].content",
        message: "is required, unless an assistant message calls tools",
      },
      {
        param: "messages[1].tool_call_id",
        message: "is required on a tool message: the call it answers",
      },
    ],
  );
});

Deno.test("parseCompletionRequest() summarises the problems in the error message", () => {
  assert.throws(
    () => parseCompletionRequest({ messages: [{ role: "tool", content: "x" }] }),
    (err: unknown) =>
      err instanceof ApiError &&
      err.message ===
        "Invalid request: messages[0].tool_call_id: is required on a tool message: the call it answers" &&
      err.param === "messages[0].tool_call_id",
  );
});

Deno.test("parseCompletionRequest() reads null as a field left out, and keeps it from the backend", () => {
  const request = parseCompletionRequest({
    model: null,
    messages: [{ role: "user", content: "Hi" }],
    stream: null,
    temperature: null,
    stop: null,
    tools: null,
    user: null,
  });
  assert.deepEqual(request, {
    messages: [{ role: "user", content: "Hi" }],
    stream: false,
    includeUsage: false,
    params: {},
  });
});

Deno.test("parseCompletionRequest() checks numbers at their bounds, and a huge integer is one problem", () => {
  const messages = [{ role: "user", content: "Hi" }];
  const accepted = parseCompletionRequest({
    messages,
    temperature: 2,
    top_p: 0,
    presence_penalty: -2,
    max_tokens: 1,
  });
  assert.deepEqual(accepted.params, {
    temperature: 2,
    top_p: 0,
    presence_penalty: -2,
    max_tokens: 1,
  });
  assert.deepEqual(
    problemsOf({
      messages,
      temperature: 2.01,
      presence_penalty: "1",
      max_tokens: 0,
      n: 2 ** 60,
      top_logprobs: 1e300,
    }),
    [
      { param: "temperature", message: "must be between 0 and 2" },
      { param: "max_tokens", message: "must be positive" },
      { param: "presence_penalty", message: "must be a number" },
      { param: "n", message: "must be an integer" },
      { param: "top_logprobs", message: "must be an integer" },
    ],
  );
});

Deno.test("parseCompletionRequest() names a content part of an unknown type by its type field", () => {
  assert.deepEqual(
    problemsOf({
      messages: [{ role: "user", content: [{ type: "text", text: "a" }, { type: "video" }, 7] }],
    }),
    [
      {
        param: "messages[0].content[1].type",
        message: 'must be a part of type "text" or "image_url"',
      },
      { param: "messages[0].content[2]", message: 'must be a part of type "text" or "image_url"' },
    ],
  );
});

Deno.test("parseCompletionRequest() takes stop as a string or a few strings, naming what is wrong", () => {
  const messages = [{ role: "user", content: "Hi" }];
  assert.deepEqual(parseCompletionRequest({ messages, stop: "END" }).params, { stop: "END" });
  const union = "must be a string or an array of at most 4 strings of at most 256 characters";
  assert.deepEqual(problemsOf({ messages, stop: ["a", "b", "c", "d", "e"] }), [
    { param: "stop", message: union },
  ]);
  assert.deepEqual(problemsOf({ messages, stop: 5 }), [{ param: "stop", message: union }]);
  assert.deepEqual(problemsOf({ messages, stop: ["a", "s".repeat(257)] }), [
    { param: "stop[1]", message: "must be at most 256 characters" },
  ]);
});

Deno.test("parseCompletionRequest() passes no __proto__ key through to the backend's fields", () => {
  const body = JSON.parse(
    '{"messages":[{"role":"user","content":"Hi"}],"top_k":40,"__proto__":{"polluted":true}}',
  );
  const { params } = parseCompletionRequest(body);
  assert.deepEqual(Object.keys(params), ["top_k"]);
  assert.equal(Object.getPrototypeOf(params), Object.prototype);
  assert.equal((params as { polluted?: unknown }).polluted, undefined);
});
