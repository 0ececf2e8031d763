import assert from "node:assert/strict";
import { type ChatMessage, userMessage } from "../lib/core/messages.ts";
import { fitContext, IMAGE_LEFT_OUT } from "../lib/worker/context_fit.ts";

/** A chat of `turns` exchanges after a system prompt, each reply `size` characters long. */
function chat(turns: number, size = 10): ChatMessage[] {
  const messages: ChatMessage[] = [{ role: "system", content: "Be brief." }];
  for (let i = 0; i < turns; i++) {
    messages.push({ role: "user", content: `question ${i}` });
    messages.push({ role: "assistant", content: `answer ${i} ${"x".repeat(size)}` });
  }
  messages.push({ role: "user", content: "the newest question" });
  return messages;
}

const roomy = { maxMessages: 1000, maxBytes: 10_000_000 };

Deno.test("fitContext() keeps a chat that fits as it is", () => {
  const messages = chat(3);
  const fitted = fitContext(messages, roomy);
  assert.deepEqual(fitted.messages, messages);
  assert.equal(fitted.droppedMessages, 0);
  assert.equal(fitted.droppedImages, 0);
});

Deno.test("fitContext() keeps the system messages and the newest turns within the message count", () => {
  const fitted = fitContext(chat(30), { ...roomy, maxMessages: 5 });
  assert.deepEqual(fitted.messages.map((m) => m.content), [
    "Be brief.",
    "question 28",
    `answer 28 ${"x".repeat(10)}`,
    "question 29",
    `answer 29 ${"x".repeat(10)}`,
    "the newest question",
  ]);
  assert.equal(fitted.droppedMessages, 56);
});

Deno.test("fitContext() never starts with a reply whose question was dropped", () => {
  const fitted = fitContext(chat(10), { ...roomy, maxMessages: 3 });
  assert.equal(fitted.messages[1].role, "user");
  assert.equal(fitted.messages.length, 4, "system, one whole exchange, the newest question");
});

Deno.test("fitContext() drops images from older turns before it drops any turn", () => {
  const image = `data:image/png;base64,${"A".repeat(40_000)}`;
  const messages: ChatMessage[] = [
    userMessage("look at this", [image]),
    { role: "assistant", content: "a cat" },
    userMessage("and this", [image]),
    { role: "assistant", content: "a dog" },
    userMessage("compare with this one", [image]),
  ];
  const fitted = fitContext(messages, { maxMessages: 100, maxBytes: 60_000 });
  assert.equal(fitted.droppedMessages, 0, "every turn is still there");
  assert.equal(fitted.droppedImages, 2);
  assert.deepEqual(fitted.messages[0].content, [
    { type: "text", text: "look at this" },
    { type: "text", text: IMAGE_LEFT_OUT },
  ]);
  assert.deepEqual(fitted.messages[4], messages[4], "the current turn keeps its image");
});

Deno.test("fitContext() drops the oldest turns once no image is left to drop", () => {
  const fitted = fitContext(chat(100, 1000), { maxMessages: 1000, maxBytes: 20_000 });
  assert.ok(fitted.droppedMessages > 0);
  assert.equal(fitted.messages[0].role, "system");
  assert.equal(fitted.messages.at(-1)!.content, "the newest question");
  assert.ok(JSON.stringify(fitted.messages).length <= 20_000);
});

Deno.test("fitContext() keeps the current turn whole, with a continued reply or tool results", () => {
  const messages: ChatMessage[] = [
    { role: "user", content: "old" },
    { role: "assistant", content: "older answer" },
    { role: "user", content: "write a long story" },
    { role: "assistant", content: "Once upon a time" },
  ];
  const fitted = fitContext(messages, { maxMessages: 1, maxBytes: 10 });
  assert.deepEqual(fitted.messages, messages.slice(2));
  assert.equal(fitted.droppedMessages, 2);
});
