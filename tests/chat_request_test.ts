/** `POST /chat`'s body, parsed in-process: what is trimmed, kept, defaulted and refused. */
import assert from "node:assert/strict";
import { ApiError, type FieldProblem } from "../lib/http/errors.ts";
import { parseChatRequest } from "../lib/http/chat_request.ts";

const options = { callbackAllowedHosts: [] };

/** The problems a rejected body yields; fails the test if the body is accepted. */
function problemsOf(body: unknown): FieldProblem[] {
  try {
    parseChatRequest(body, options);
  } catch (err) {
    assert.ok(err instanceof ApiError && err.status === 400, `a 400, not ${err}`);
    assert.equal(err.code, "invalid_field");
    return err.details ?? [];
  }
  assert.fail("the body was accepted");
}

Deno.test("parseChatRequest() trims the id and the model, defaults the priority and ignores unknown fields", () => {
  const request = parseChatRequest({
    conversation_id: " chat-1 ",
    user_message: "  Hi  ",
    model: " llama3 ",
    images: [{ image_url: "https://example.com/a.png", detail: "high" }],
    temperature: 0.2,
  }, options);
  assert.deepEqual(request, {
    conversationId: "chat-1",
    userMessage: "  Hi  ",
    imageUrls: ["https://example.com/a.png"],
    priority: "normal",
    model: "llama3",
    callbackUrl: undefined,
  });
});

Deno.test("parseChatRequest() takes an http(s) callback URL trimmed, and refuses other URLs by name", () => {
  const request = parseChatRequest(
    { conversation_id: "a", user_message: "hi", callback_url: " https://hooks.example.com/a\tb " },
    options,
  );
  assert.equal(request.callbackUrl, "https://hooks.example.com/ab");
  for (const url of ["ftp://example.com/hook", "http:example.com", "not a url", "", 7]) {
    assert.deepEqual(
      problemsOf({ conversation_id: "a", user_message: "hi", callback_url: url }),
      [{ param: "callback_url", message: "must be an http(s) URL" }],
      String(url),
    );
  }
  assert.deepEqual(
    problemsOf({
      conversation_id: "a",
      user_message: "hi",
      callback_url: `https://example.com/${"a".repeat(2048)}`,
    }),
    [{ param: "callback_url", message: "must be at most 2048 characters" }],
  );
});

Deno.test("parseChatRequest() refuses null for an optional field, and lists every problem in order", () => {
  assert.deepEqual(problemsOf({ conversation_id: "a", user_message: "hi", priority: null }), [
    { param: "priority", message: 'must be "high" or "normal"' },
  ]);
  assert.deepEqual(
    problemsOf({
      conversation_id: "",
      user_message: " ",
      images: [{ image_url: "https://example.com/a.png" }, "b.png", {}],
      model: "  ",
    }),
    [
      { param: "conversation_id", message: "must not be empty" },
      { param: "user_message", message: "must not be empty" },
      { param: "images[1]", message: "must be an object with an image_url string" },
      { param: "images[2].image_url", message: "is required" },
      { param: "model", message: "must not be empty" },
    ],
  );
});

Deno.test("parseChatRequest() counts a model's characters, not its UTF-16 units", () => {
  const emoji = "😀"; // one character, two UTF-16 units
  const request = parseChatRequest(
    { conversation_id: "a", user_message: "hi", model: emoji.repeat(256) },
    options,
  );
  assert.equal(request.model, emoji.repeat(256));
  assert.deepEqual(
    problemsOf({ conversation_id: "a", user_message: "hi", model: emoji.repeat(257) }),
    [{ param: "model", message: "must be at most 256 characters" }],
  );
});
