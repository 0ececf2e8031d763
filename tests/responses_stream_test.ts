/**
 * The Responses event stream on its own: numbered events, items opened and
 * closed in order, and a retried attempt's reply either waited out or refused.
 */
import assert from "node:assert/strict";
import { newJob } from "../lib/core/jobs.ts";
import { ResponseEvents } from "../lib/http/responses_stream.ts";
import type { ResponseFacts } from "../lib/http/responses_objects.ts";

const JOB_ID = "0b6a1b0e-7f35-4a8e-9d52-2b1d6a9c1f00";
const FACTS: ResponseFacts = {
  jobId: JOB_ID,
  createdAt: 1_700_000_000,
  model: "m",
  instructions: null,
  params: undefined,
  record: { store: true },
};

function succeeded(reply: string, extra: Record<string, unknown> = {}) {
  const job = newJob({
    conversationId: "c",
    route: "vllm",
    model: "m",
    priority: "normal",
    userMessage: { role: "user", content: "Hi" },
    ttlDays: 1,
  });
  return { ...job, job_id: JOB_ID, status: "succeeded" as const, reply, ...extra };
}

Deno.test("a streamed reply opens its items in order and numbers every event", () => {
  const events = new ResponseEvents(FACTS, () => new Error("restarted"));
  const all = [
    ...events.start(),
    ...events.progress("", "Thinking"),
    ...events.progress("Hel", "Thinking"),
    ...events.progress("Hello", "Thinking"),
    ...events.finish(succeeded("Hello", {
      reply_message: { role: "assistant", reasoning_content: "Thinking" },
    })),
  ];
  assert.deepEqual(all.map((e) => e.sequence_number), all.map((_, i) => i));
  assert.deepEqual(all.map((e) => e.type), [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.reasoning_text.delta",
    "response.reasoning_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
  ]);
  const completed = all.at(-1)!.response as { output: { id: string; type: string }[] };
  assert.deepEqual(completed.output.map((item) => [item.type, item.id]), [
    ["reasoning", `rs_${JOB_ID}`],
    ["message", `msg_${JOB_ID}`],
  ]);
});

Deno.test("a retried attempt is waited out until it passes what was sent, and refused if it differs", () => {
  const events = new ResponseEvents(FACTS, () => new Error("restarted"));
  events.start();
  assert.equal(events.progress("Hello wor", "").length, 3);
  assert.deepEqual(events.progress("Hel", ""), [], "a new attempt that has not caught up yet");
  const more = events.progress("Hello world", "");
  assert.deepEqual(more.map((e) => e.delta), ["ld"]);
  assert.throws(() => events.progress("Goodbye", ""), /restarted/);
});

Deno.test("a reply cut short by max_output_tokens ends as response.incomplete", () => {
  const events = new ResponseEvents(FACTS, () => new Error("restarted"));
  events.start();
  const end = events.finish(succeeded("Hel", { finish_reason: "length" })).at(-1)!;
  assert.equal(end.type, "response.incomplete");
  const response = end.response as { status: string; incomplete_details: unknown };
  assert.equal(response.status, "incomplete");
  assert.deepEqual(response.incomplete_details, { reason: "max_output_tokens" });
});
