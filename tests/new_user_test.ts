/**
 * The newcomer's path, for real: a fresh copy of the project with no `.env`,
 * `deno task dev` in a child process, a message sent and its reply read back
 * over HTTP, then a restart that keeps the conversation.
 */
import assert from "node:assert/strict";
import { freePort } from "./support/net.ts";
import { copyProject, PROJECT_DIR, startDeno, waitUntilUp } from "./support/child_deno.ts";
import { startStandInLlm } from "./support/stand_in_llm.ts";

/** `deno task dev` in a child process with a clean environment, as on a newcomer's machine. */
async function startDev(dir: string, env: Record<string, string>) {
  const child = startDeno(["task", "dev"], { cwd: dir, env });
  const base = `http://127.0.0.1:${env.PORT}`;
  await waitUntilUp(`${base}/healthz`, child);
  return {
    base,
    stop(): Promise<{ code: number; output: string }> {
      child.kill("SIGTERM");
      return child.exited;
    },
  };
}

async function getJson(url: string) {
  const res = await fetch(url);
  return { status: res.status, body: await res.json() };
}

Deno.test("a newcomer runs deno task dev with no .env, chats, restarts, and keeps the conversation", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "fresh-clone-" });
  const vllm = startStandInLlm({ name: "vllm" });
  const env = { PORT: String(freePort()), VLLM_BASE_URL: vllm.baseUrl };
  try {
    await copyProject(PROJECT_DIR, dir);

    await t.step("the first run answers a message sent over HTTP", async () => {
      const dev = await startDev(dir, env);
      let stopped = false;
      try {
        const res = await fetch(`${dev.base}/chat`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ conversation_id: "first-chat", user_message: "Hello gateway" }),
        });
        assert.equal(res.status, 202);
        const { job_id } = await res.json();
        const deadline = Date.now() + 30_000;
        let job = (await getJson(`${dev.base}/jobs/${job_id}`)).body;
        while (job.status !== "succeeded" && job.status !== "failed" && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 100));
          job = (await getJson(`${dev.base}/jobs/${job_id}`)).body;
        }
        assert.equal(job.status, "succeeded", JSON.stringify(job));
        assert.equal(job.reply, "vllm says: Hello gateway");

        const { code, output } = await dev.stop();
        stopped = true;
        assert.equal(code, 0, output);
        const startLine = output.split("\n").find((line) => line.includes('"Gateway starting"'));
        assert.ok(startLine, `a start-up line was logged:\n${output}`);
        const fields = JSON.parse(startLine);
        assert.equal(fields.backend, "embedded");
        assert.equal(fields.data_dir, "./data");
        assert.deepEqual(
          fields.llm_backends.map((b: { name: string; base_url: string }) => [b.name, b.base_url]),
          [["vllm", vllm.baseUrl], ["ollama", "http://localhost:11434/v1"]],
        );
      } finally {
        if (!stopped) await dev.stop();
      }
    });

    await t.step("after a restart the conversation is still there", async () => {
      const dev = await startDev(dir, env);
      try {
        const { status, body } = await getJson(
          `${dev.base}/conversation?conversation_id=first-chat`,
        );
        assert.equal(status, 200);
        assert.deepEqual(body.messages, [
          { role: "user", content: "Hello gateway" },
          { role: "assistant", content: "vllm says: Hello gateway" },
        ]);
      } finally {
        await dev.stop();
      }
    });
  } finally {
    await vllm.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task worker with the embedded backend exits at once and says why", async () => {
  const { code, output } = await startDeno(["task", "worker"], { env: { BACKEND: "embedded" } })
    .exited;
  assert.equal(code, 1);
  assert.match(output, /the worker already runs inside `deno task dev`/);
});
