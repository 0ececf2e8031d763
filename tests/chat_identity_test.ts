import assert from "node:assert/strict";
import { type ChatShape, identifyChat } from "../lib/http/chat_identity.ts";

function headers(values: Record<string, string>) {
  return (name: string) => values[name.toLowerCase()];
}

const turn: ChatShape = {
  stream: true,
  messages: [{ role: "system", content: "Be kind." }, { role: "user", content: "Hi" }],
};

Deno.test("identifyChat() takes the conversation from X-Conversation-Id or X-OpenWebUI-Chat-Id", () => {
  assert.deepEqual(identifyChat(headers({ "x-openwebui-chat-id": " 7f0c " }), turn), {
    kind: "conversation",
    conversationId: "7f0c",
    header: "x-openwebui-chat-id",
  });
  assert.deepEqual(
    identifyChat(headers({ "x-conversation-id": "mine", "x-openwebui-chat-id": "theirs" }), turn),
    { kind: "conversation", conversationId: "mine", header: "x-conversation-id" },
  );
  assert.deepEqual(identifyChat(headers({}), turn), { kind: "stateless", reason: "no_id" });
});

Deno.test("identifyChat() keeps temporary chats and channels stateless", () => {
  for (const id of ["local:a1B2c3", "local:undefined", "local", "temporary:x", "channel:42"]) {
    assert.deepEqual(
      identifyChat(headers({ "x-openwebui-chat-id": id }), turn),
      { kind: "stateless", reason: "temporary" },
      id,
    );
  }
  assert.equal(
    identifyChat(headers({ "x-openwebui-chat-id": "locality" }), turn).kind,
    "conversation",
  );
});

Deno.test("identifyChat() treats a placeholder left unexpanded as no id", () => {
  assert.deepEqual(
    identifyChat(
      headers({ "x-openwebui-chat-id": "{{CHAT_ID}}", "x-openwebui-task": "{{TASK}}" }),
      turn,
    ),
    { kind: "stateless", reason: "no_id" },
  );
});

Deno.test("identifyChat() knows a task by its header, whatever its chat id", () => {
  assert.deepEqual(
    identifyChat(
      headers({ "x-openwebui-chat-id": "7f0c", "x-openwebui-task": "title_generation" }),
      turn,
    ),
    { kind: "stateless", reason: "task" },
  );
});

Deno.test("identifyChat() knows a task by its shape when no header says so", () => {
  const task = (content: unknown, stream = false): ChatShape => ({
    stream,
    messages: [{ role: "user", content }],
  });
  const chatId = headers({ "x-openwebui-chat-id": "7f0c" });
  const title =
    "### Task:\nGenerate a concise, 3-5 word title.\n<chat_history>\nUSER: Hi\n</chat_history>";
  assert.equal(identifyChat(chatId, task(title)).kind, "stateless");
  assert.equal(
    identifyChat(
      chatId,
      task([{ type: "text", text: "Suggest tags.\n<chat_history>…</chat_history>" }]),
    ).kind,
    "stateless",
  );
  assert.equal(
    identifyChat(chatId, task(title, true)).kind,
    "conversation",
    "a streamed turn is a chat",
  );
  assert.equal(identifyChat(chatId, task("### Tasks for today?")).kind, "conversation");
});

Deno.test("identifyChat() knows a task that a workspace model's system prompt goes before", () => {
  const chatId = headers({ "x-openwebui-chat-id": "7f0c" });
  const title = "### Task:\nGenerate a title.\n<chat_history>\nUSER: Hi\n</chat_history>";
  const withSystem = (...messages: ChatShape["messages"]): ChatShape => ({
    stream: false,
    messages: [{ role: "system", content: "You are a pirate." }, ...messages],
  });
  assert.equal(
    identifyChat(chatId, withSystem({ role: "user", content: title })).kind,
    "stateless",
  );
  assert.equal(
    identifyChat(
      chatId,
      withSystem(
        { role: "user", content: "Hi" },
        { role: "assistant", content: "Arr" },
        { role: "user", content: title },
      ),
    ).kind,
    "conversation",
    "a chat whose newest message looks like a task is still a chat",
  );
});
