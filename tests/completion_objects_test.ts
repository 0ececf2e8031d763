import assert from "node:assert/strict";
import { chunkObject, completionObject, modelList } from "../lib/http/completion_objects.ts";

Deno.test("completionObject() has OpenAI's shape", () => {
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

Deno.test("chunkObject() has OpenAI's shape", () => {
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

Deno.test("modelList() has OpenAI's shape", () => {
  assert.deepEqual(
    modelList([{ id: "llama3", owned_by: "vllm" }, {
      id: "llava:7b",
      owned_by: "mac",
      created: 1600000000,
    }], { catalogue: "workers", now: 1700000000 }),
    {
      object: "list",
      data: [
        { id: "llama3", object: "model", created: 1700000000, owned_by: "vllm" },
        { id: "llava:7b", object: "model", created: 1600000000, owned_by: "mac" },
      ],
      catalogue: "workers",
    },
  );
});
