/**
 * The newcomer's path, for real, as README.md's quick start writes it: a
 * fresh copy of the project with no `.env`, a model server (here a stand-in
 * serving the model the README starts), the README's `deno task dev` line in
 * a child process, its curl requests and its `openai` SDK example, then a
 * restart that keeps the conversation.
 */
import assert from "node:assert/strict";
import { freePort } from "./support/net.ts";
import { copyProject, PROJECT_DIR, startDeno, waitUntilUp } from "./support/child_deno.ts";
import {
  codeBlocks,
  sectionOf,
  shellCommands,
  shellWords,
  withAssignments,
} from "./support/markdown.ts";
import { startStandInLlm } from "./support/stand_in_llm.ts";

/** Where the README says the gateway listens; the test's gateway listens on a free port instead. */
const README_BASE = "http://127.0.0.1:8787";

/** What the quick start asks a reader to run. */
interface QuickStart {
  /** The model `vllm serve` starts. */
  model: string;
  /** The variables of the `deno task dev` line that points the gateway at vLLM. */
  devEnv: Record<string, string>;
  /** The variables of every `deno task dev` line that points the gateway somewhere. */
  pointings: Record<string, string>[];
  curls: string[];
  sdkExample: string;
}

async function readQuickStart(): Promise<QuickStart> {
  const section = sectionOf(await Deno.readTextFile(`${PROJECT_DIR}/README.md`), "Quick start");
  const blocks = codeBlocks(section);
  const lines = blocks.filter((b) => b.lang === "sh").flatMap((b) => shellCommands(b.text));
  const commands = lines.map((c) => withAssignments(shellWords(c)));
  const vllm = commands.find(({ args }) => args[0] === "vllm" && args[1] === "serve");
  const pointings = commands.filter(({ env, args }) =>
    args.join(" ") === "deno task dev" && Object.keys(env).length > 0
  ).map(({ env }) => env);
  const dev = pointings.find((env) => env.VLLM_BASE_URL !== undefined);
  const curls = lines.filter((c) => c.startsWith("curl "));
  const sdk = blocks.find((b) => b.lang === "ts");
  assert.ok(vllm, "the quick start starts vLLM with `vllm serve <model>`");
  assert.ok(dev, "the quick start points `deno task dev` at vLLM with VLLM_BASE_URL");
  assert.ok(sdk, "the quick start has an openai SDK example");
  return { model: vllm.args[2], devEnv: dev, pointings, curls, sdkExample: sdk.text };
}

/** A curl command of the README as a fetch: `-s`, `-X`, `-H`, `-d` (a POST, as in curl) and the URL. */
function curlRequest(command: string, base: string): { url: string; init: RequestInit } {
  const words = shellWords(command).slice(1);
  const init: RequestInit & { headers: Record<string, string> } = {
    method: words.includes("-d") ? "POST" : "GET",
    headers: {},
  };
  let url: string | undefined;
  for (let i = 0; i < words.length; i++) {
    const word = words[i];
    if (word === "-s") continue;
    else if (word === "-X") init.method = words[++i];
    else if (word === "-H") {
      const [name, ...value] = words[++i].split(":");
      init.headers[name.trim()] = value.join(":").trim();
    } else if (word === "-d") init.body = words[++i];
    else if (word.startsWith(README_BASE)) url = base + word.slice(README_BASE.length);
    else throw new Error(`Cannot follow the README's curl: unknown word "${word}" in ${command}`);
  }
  assert.ok(url, `the curl command names the gateway's URL: ${command}`);
  return { url, init };
}

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

Deno.test("a newcomer follows the README's quick start: chats with curl and the openai SDK, restarts, and keeps the conversation", async (t) => {
  const quickStart = await readQuickStart();
  const dir = await Deno.makeTempDir({ prefix: "fresh-clone-" });
  const vllm = startStandInLlm({ name: "vllm", models: [{ id: quickStart.model }] });
  // The README's own line, with the address the stand-in really has.
  const env = { ...quickStart.devEnv, VLLM_BASE_URL: vllm.baseUrl, PORT: String(freePort()) };
  let conversationUrl: string | undefined;
  let messages: unknown;
  try {
    await copyProject(PROJECT_DIR, dir);

    await t.step("the first run answers the README's requests", async (t) => {
      const dev = await startDev(dir, env);
      let stopped = false;
      try {
        await t.step("the curl requests queue a chat, read its reply and its history", async () => {
          let jobId: string | undefined;
          const seen: string[] = [];
          for (let command of quickStart.curls) {
            if (command.includes("<job_id from above>")) {
              assert.ok(jobId, `a job id came before: ${command}`);
              command = command.replace("<job_id from above>", jobId);
            }
            const { url, init } = curlRequest(command, dev.base);
            const res = await fetch(url, init);
            const body = await res.json();
            const path = new URL(url).pathname;
            seen.push(path.split("/")[1]);
            if (path === "/chat") {
              assert.equal(res.status, 202, JSON.stringify(body));
              jobId = body.job_id;
            } else if (path.startsWith("/jobs/")) {
              assert.equal(body.status, "succeeded", JSON.stringify(body));
              assert.equal(body.reply, "vllm says: Hi");
            } else if (path === "/conversation") {
              assert.equal(res.status, 200, JSON.stringify(body));
              assert.deepEqual(body.messages, [
                { role: "user", content: "Hi" },
                { role: "assistant", content: "vllm says: Hi" },
              ]);
              conversationUrl = url.slice(dev.base.length);
              messages = body.messages;
            }
          }
          assert.deepEqual(seen, ["chat", "jobs", "conversation"]);
        });

        await t.step("the openai SDK example prints the model's reply", async () => {
          const script = `${dir}/readme_openai_example.ts`;
          await Deno.writeTextFile(
            script,
            quickStart.sdkExample.replaceAll(README_BASE, dev.base),
          );
          const { code, output } = await startDeno(
            ["run", "--allow-net=127.0.0.1", "--allow-env", "--allow-read", script],
            { cwd: dir, deadlineMs: 60_000 },
          ).exited;
          assert.equal(code, 0, output);
          assert.match(output, /^vllm says: Hi$/m);
        });

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
        const res = await fetch(dev.base + conversationUrl);
        assert.equal(res.status, 200);
        assert.deepEqual((await res.json()).messages, messages);
      } finally {
        await dev.stop();
      }
    });
  } finally {
    await vllm.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

/** The variable that sets a backend's address, by the README's rule: `VLLM_…`, `OLLAMA_…`, else `LLM_<NAME>_…`. */
function baseUrlVariable(backend: string): string {
  return backend === "vllm" || backend === "ollama"
    ? `${backend.toUpperCase()}_BASE_URL`
    : `LLM_${backend.toUpperCase()}_BASE_URL`;
}

Deno.test("each of the README's ways to point the gateway at a model server sends text there", async (t) => {
  const { pointings } = await readQuickStart();
  assert.ok(pointings.length >= 3, "the README points at vLLM elsewhere, Ollama and any server");
  const dir = await Deno.makeTempDir({ prefix: "fresh-clone-" });
  try {
    await copyProject(PROJECT_DIR, dir);
    for (const [i, pointing] of pointings.entries()) {
      const line = Object.entries(pointing).map(([k, v]) => `${k}=${v}`).join(" ");
      await t.step(`${line} deno task dev`, async () => {
        // Text without a model goes to the first backend: the stand-in plays it, at its real address.
        const first = (pointing.LLM_BACKENDS ?? "vllm,ollama").split(",")[0];
        const server = startStandInLlm({ name: first });
        const dev = await startDev(dir, {
          ...pointing,
          [baseUrlVariable(first)]: server.baseUrl,
          PORT: String(freePort()),
          // Each line starts afresh, as it would on a new machine.
          DATA_DIR: `./data-${i}`,
        });
        try {
          const res = await fetch(`${dev.base}/chat`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ conversation_id: "pointed", user_message: "Hi" }),
          });
          const queued = await res.json();
          assert.equal(res.status, 202, JSON.stringify(queued));
          const job = await (await fetch(`${dev.base}/jobs/${queued.job_id}?wait=30`)).json();
          assert.equal(job.status, "succeeded", JSON.stringify(job));
          assert.equal(job.route, first);
          assert.equal(job.reply, `${first} says: Hi`);
        } finally {
          const { code, output } = await dev.stop();
          await server.stop();
          assert.equal(code, 0, output);
        }
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task worker with the embedded backend exits at once and says why", async () => {
  const { code, output } = await startDeno(["task", "worker"], { env: { BACKEND: "embedded" } })
    .exited;
  assert.equal(code, 1);
  assert.match(output, /the worker already runs inside `deno task dev`/);
});
