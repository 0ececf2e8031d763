/** Anthropic's reply objects and event stream, built from a job's reply as it grows and ends. */
import assert from "node:assert/strict";
import { newJob } from "../lib/core/jobs.ts";
import type { Job } from "../lib/core/jobs.ts";
import { anthropicErrorBody, anthropicErrorType } from "../lib/http/anthropic_errors.ts";
import {
  anthropicUsage,
  finalReply,
  messageObject,
  possibleStopChars,
  toolInput,
} from "../lib/http/anthropic_objects.ts";
import { MessageStreamEncoder, type StreamEvent } from "../lib/http/anthropic_stream.ts";
import { ApiError } from "../lib/http/errors.ts";

function succeeded(fields: Partial<Job>): Job {
  return {
    ...newJob({
      conversationId: "c",
      route: "vllm",
      model: "m",
      priority: "normal",
      userMessage: { role: "user", content: "Hi" },
      ttlDays: 1,
    }),
    status: "succeeded",
    usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 },
    ...fields,
  };
}

const noStops = { stopSequences: [], stopShown: false };

function encoder(options: { showThinking?: boolean; heldStops?: string[] } = {}) {
  return new MessageStreamEncoder({
    id: "msg_1",
    model: "m",
    jobId: "job-1",
    showThinking: options.showThinking ?? false,
    heldStops: options.heldStops ?? [],
  });
}

/** The text the events carry, by block kind. */
function carried(events: readonly StreamEvent[]): { text: string; thinking: string } {
  const out = { text: "", thinking: "" };
  for (const event of events) {
    const delta = event.delta as { type?: string; text?: string; thinking?: string } | undefined;
    if (delta?.type === "text_delta") out.text += delta.text;
    if (delta?.type === "thinking_delta") out.thinking += delta.thinking;
  }
  return out;
}

Deno.test("finish reasons become stop reasons, and a shown stop sequence is named and removed", () => {
  const reason = (finish_reason: string) =>
    finalReply(succeeded({ reply: "ok", finish_reason }), noStops).stopReason;
  assert.equal(reason("stop"), "end_turn");
  assert.equal(reason("length"), "max_tokens");
  assert.equal(reason("content_filter"), "refusal");
  assert.equal(reason("something_new"), "end_turn");

  const stops = { stopSequences: ["END", "THE END"], stopShown: true };
  const stopped = finalReply(succeeded({ reply: "and so THE END", finish_reason: "stop" }), stops);
  assert.equal(stopped.text, "and so ");
  assert.equal(stopped.stopReason, "stop_sequence");
  assert.equal(stopped.stopSequence, "THE END", "the longest that ends the text");
  const natural = finalReply(succeeded({ reply: "no stop here", finish_reason: "stop" }), stops);
  assert.equal(natural.stopReason, "end_turn");
  assert.equal(natural.stopSequence, null);
  const unshown = finalReply(succeeded({ reply: "ends END", finish_reason: "stop" }), {
    ...stops,
    stopShown: false,
  });
  assert.equal(unshown.text, "ends END", "a backend that drops it leaves nothing to remove");
});

Deno.test("a reply with tool calls is a message of text, then tool_use blocks", () => {
  const job = succeeded({
    reply: "Checking.",
    finish_reason: "tool_calls",
    reply_message: {
      role: "assistant",
      tool_calls: [
        { id: "c1", type: "function", function: { name: "weather", arguments: '{"city":"Oslo"}' } },
        { id: "c2", type: "function", function: { name: "time", arguments: "" } },
      ],
      reasoning_content: "The user wants both.",
    },
  });
  const reply = finalReply(job, noStops);
  assert.deepEqual(messageObject({ id: "msg_1", model: "m", reply, showThinking: true }), {
    id: "msg_1",
    type: "message",
    role: "assistant",
    model: "m",
    content: [
      { type: "thinking", thinking: "The user wants both.", signature: "" },
      { type: "text", text: "Checking." },
      { type: "tool_use", id: "c1", name: "weather", input: { city: "Oslo" } },
      { type: "tool_use", id: "c2", name: "time", input: {} },
    ],
    stop_reason: "tool_use",
    stop_sequence: null,
    usage: {
      input_tokens: 7,
      output_tokens: 3,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 0,
    },
  });
  const hidden = messageObject({ id: "msg_1", model: "m", reply, showThinking: false });
  assert.equal(hidden.content[0].type, "text");
});

Deno.test("tool arguments that are not a JSON object arrive whole, not lost", () => {
  assert.deepEqual(toolInput('{"a":1}'), { a: 1 });
  assert.deepEqual(toolInput("  "), {});
  assert.deepEqual(toolInput("[1,2]"), { arguments: "[1,2]" });
  assert.deepEqual(toolInput("{broken"), { arguments: "{broken" });
});

Deno.test("the stream sends thinking, then text, each piece once, and ends with the stop reason", () => {
  const stream = encoder({ showThinking: true });
  const events = [
    ...stream.start(anthropicUsage({ prompt_tokens: 5, completion_tokens: 0 })),
    ...stream.progress("", "Hmm"),
    ...stream.progress("", "Hmm, yes"),
    ...stream.progress("Hel", "Hmm, yes"),
    ...stream.progress("Hel", "Hmm, yes"),
    ...stream.progress("Hello", "Hmm, yes"),
    ...stream.finish(finalReply(
      succeeded({
        reply: "Hello!",
        reply_message: { role: "assistant", reasoning_content: "Hmm, yes" },
        finish_reason: "length",
      }),
      noStops,
    )),
  ];
  assert.deepEqual(events.map((e) => [e.type, e.index ?? null]), [
    ["message_start", null],
    ["content_block_start", 0],
    ["content_block_delta", 0],
    ["content_block_delta", 0],
    ["content_block_stop", 0],
    ["content_block_start", 1],
    ["content_block_delta", 1],
    ["content_block_delta", 1],
    ["content_block_delta", 1],
    ["content_block_stop", 1],
    ["message_delta", null],
    ["message_stop", null],
  ]);
  assert.deepEqual(carried(events), { text: "Hello!", thinking: "Hmm, yes" });
  assert.deepEqual(events.at(-2)!.delta, { stop_reason: "max_tokens", stop_sequence: null });
  assert.equal((events.at(-2)!.usage as { output_tokens: number }).output_tokens, 3);
  assert.equal(
    (events[0].message as { usage: { input_tokens: number } }).usage.input_tokens,
    5,
  );
});

Deno.test("hidden reasoning sends nothing; an empty reply still has its text block", () => {
  const stream = encoder();
  const events = [
    ...stream.progress("", "thinking hard"),
    ...stream.finish(finalReply(succeeded({ reply: "" }), noStops)),
  ];
  assert.deepEqual(events.map((e) => e.type), [
    "content_block_start",
    "content_block_stop",
    "message_delta",
    "message_stop",
  ]);
  assert.deepEqual(events[0].content_block, { type: "text", text: "" });
});

Deno.test("tool calls stream as tool_use blocks with their input as one JSON delta", () => {
  const stream = encoder();
  const events = stream.finish(finalReply(
    succeeded({
      reply: "",
      finish_reason: "tool_calls",
      reply_message: {
        role: "assistant",
        content: null,
        tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: '{"x":1}' } }],
      },
    }),
    noStops,
  ));
  assert.deepEqual(events.slice(0, 3), [
    {
      type: "content_block_start",
      index: 0,
      content_block: { type: "tool_use", id: "c1", name: "f", input: {} },
    },
    {
      type: "content_block_delta",
      index: 0,
      delta: { type: "input_json_delta", partial_json: '{"x":1}' },
    },
    { type: "content_block_stop", index: 0 },
  ]);
  assert.deepEqual(events[3].delta, { stop_reason: "tool_use", stop_sequence: null });
});

Deno.test("what may be a stop sequence's start is held back, and a stop sequence never sent", () => {
  assert.equal(possibleStopChars("and the EN", ["END"]), 2);
  assert.equal(possibleStopChars("and the END", ["END"]), 3);
  assert.equal(possibleStopChars("and then", ["END"]), 0);
  const stream = encoder({ heldStops: ["END"] });
  const sent = [
    ...stream.progress("one E", ""),
    ...stream.progress("one EX", ""),
    ...stream.progress("one EX tw", ""),
    ...stream.progress("one EX two EN", ""),
    ...stream.progress("one EX two END", ""),
  ];
  assert.equal(carried(sent).text, "one EX two ");
  const stops = { stopSequences: ["END"], stopShown: true };
  const end = stream.finish(
    finalReply(succeeded({ reply: "one EX two END", finish_reason: "stop" }), stops),
  );
  assert.equal(carried([...sent, ...end]).text, "one EX two ");
  assert.deepEqual(end.at(-2)!.delta, { stop_reason: "stop_sequence", stop_sequence: "END" });
});

Deno.test("a retried attempt is waited for; one that says something else ends the stream", () => {
  const stream = encoder();
  assert.equal(carried(stream.progress("Hello wor", "")).text, "Hello wor");
  assert.deepEqual(stream.progress("Hel", ""), [], "a new attempt, behind: nothing yet");
  assert.equal(carried(stream.progress("Hello world", "")).text, "ld");
  assert.throws(
    () => stream.progress("Goodbye world!", ""),
    (err: unknown) => err instanceof ApiError && err.code === "stream_restarted",
  );
});

Deno.test("errors take Anthropic's types by status", () => {
  const types = [400, 401, 403, 404, 405, 409, 413, 415, 429, 500, 502, 503, 504].map((s) =>
    anthropicErrorType(s)
  );
  assert.deepEqual(types, [
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "invalid_request_error",
    "conflict_error",
    "request_too_large",
    "invalid_request_error",
    "rate_limit_error",
    "api_error",
    "api_error",
    "overloaded_error",
    "timeout_error",
  ]);
  assert.deepEqual(
    anthropicErrorBody(
      {
        status: 400,
        body: { error: { message: "Invalid request: model: is required", type: "x" } },
      },
      "req-1",
    ),
    {
      type: "error",
      error: { type: "invalid_request_error", message: "Invalid request: model: is required" },
      request_id: "req-1",
    },
  );
});
