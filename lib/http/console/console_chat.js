// The console's "Try a chat": a chat streamed from /v1/chat/completions, or,
// for an embedding model, the vector /v1/embeddings makes of the message.
// Loaded after console.js, whose helpers ($, el, call, callJson, guarded,
// refreshJobs) it uses, and which marks each model's kind in the list, and
// after charts.js (refreshUsageAfterChat); like them, it sets everything it
// shows as text, never HTML.
"use strict";

function embeddingChosen() {
  return $("model").selectedOptions[0]?.dataset.kind === "embedding";
}

/** An embedding model takes text alone: no conversation, no image. */
function showModelKind() {
  const embedding = embeddingChosen();
  for (const id of ["conversation", "read-conversation", "image-url"]) $(id).disabled = embedding;
  $("send").textContent = embedding ? "Embed" : "Send";
}

$("model").addEventListener("change", showModelKind);

$("chat-form").addEventListener("submit", (event) => {
  event.preventDefault();
  guarded(sendChat, $("chat-state"));
});

async function sendChat() {
  if (embeddingChosen()) return await sendEmbedding();
  const text = $("message").value;
  const imageUrl = $("image-url").value.trim();
  const conversation = $("conversation").value.trim();
  const content = imageUrl
    ? [{ type: "text", text }, { type: "image_url", image_url: { url: imageUrl } }]
    : text;
  const headers = conversation ? { "x-conversation-id": conversation } : {};
  $("send").disabled = true;
  $("reply").textContent = "";
  $("chat-state").textContent = "waiting for the worker…";
  try {
    const res = await call("/v1/chat/completions", {
      method: "POST",
      headers,
      body: JSON.stringify({
        model: $("model").value,
        messages: [{ role: "user", content }],
        stream: true,
      }),
    });
    if (!res.ok) {
      const body = await res.json().catch(() => null);
      throw new Error(body?.error?.message ?? `The gateway answered ${res.status}`);
    }
    const error = await readStream(res.body, (piece) => {
      $("chat-state").textContent = "streaming…";
      $("reply").append(piece);
    });
    $("chat-state").textContent = error ? "" : "done";
    if (error) throw new Error(error);
    $("message").value = "";
    if (conversation) await readConversation();
  } finally {
    $("send").disabled = false;
    refreshJobs();
    refreshUsageAfterChat();
  }
}

/** Reads server-sent events of chat.completion.chunk; returns an error message, if one came. */
async function readStream(body, onText) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  while (true) {
    const { value, done } = await reader.read();
    if (done) return undefined;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event.split("\n").filter((l) => l.startsWith("data:")).map((l) =>
        l.slice(5).trim()
      ).join("\n");
      if (!data || data === "[DONE]") continue;
      const chunk = JSON.parse(data);
      if (chunk.error) return chunk.error.message;
      const piece = chunk.choices?.[0]?.delta?.content;
      if (piece) onText(piece);
    }
  }
}

$("read-conversation").addEventListener("click", () => guarded(readConversation, $("chat-state")));

async function readConversation() {
  const id = $("conversation").value.trim();
  if (!id) {
    $("chat-state").textContent = "Give a conversation id to read";
    return;
  }
  const res = await call(`/conversation?conversation_id=${encodeURIComponent(id)}`);
  const body = await res.json().catch(() => null);
  if (res.status === 404) {
    $("transcript").hidden = true;
    $("chat-state").textContent = "Nothing stored under that conversation id yet";
    return;
  }
  if (!res.ok) throw new Error(body?.error?.message ?? `The gateway answered ${res.status}`);
  const text = (content) =>
    typeof content === "string"
      ? content
      : content.map((part) =>
        part.type === "text" ? part.text : `[image: ${part.image_url?.url ?? ""}]`
      ).join(" ");
  $("transcript").replaceChildren(
    ...body.messages.map((m) =>
      el("li", {}, el("span", { class: "role", textContent: m.role }), text(m.content))
    ),
  );
  $("transcript").hidden = false;
}

/** Embeds the message and shows the vector's length and its first numbers. */
async function sendEmbedding() {
  $("send").disabled = true;
  $("reply").textContent = "";
  $("transcript").hidden = true;
  $("chat-state").textContent = "waiting for the worker…";
  try {
    const body = await callJson("/v1/embeddings", {
      method: "POST",
      body: JSON.stringify({
        model: $("model").value,
        input: $("message").value,
        encoding_format: "float",
      }),
    });
    const vector = body.data[0].embedding;
    const first = vector.slice(0, 8).map((x) => x.toFixed(4)).join(", ");
    $("reply").textContent = `A vector of ${vector.length} numbers: [${first}${
      vector.length > 8 ? ", …" : ""
    }] (${body.usage.prompt_tokens} tokens)`;
    $("chat-state").textContent = "done";
  } finally {
    $("send").disabled = false;
    refreshJobs();
    refreshUsageAfterChat();
  }
}
