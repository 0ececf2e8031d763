/**
 * The Moto set-up of docs/aws.md, as a user follows it: the test reads the
 * page's commands and runs each one, in order: one `moto_server` for
 * DynamoDB, SQS and S3, `.env` copied from `.env.example`, `deno task setup`,
 * then `deno task dev` and `deno task worker` as two processes. A command it
 * does not know fails the test, so the page cannot drift from what is run.
 */
import assert from "node:assert/strict";
import { skipWithoutAwsEmulators } from "./support/aws_emulators.ts";
import {
  copyProject,
  type DenoChild,
  PROJECT_DIR,
  startDeno,
  waitUntilUp,
} from "./support/child_deno.ts";
import { codeBlocks, sectionOf, shellCommands, shellWords } from "./support/markdown.ts";
import { type Moto, startMoto } from "./support/moto.ts";
import { freePort } from "./support/net.ts";
import { startStandInLlm } from "./support/stand_in_llm.ts";
import { eventually } from "./support/wait.ts";

/** The page and the heading whose first shell block is the set-up. */
const PAGE = "docs/aws.md";
const SECTION = "Moto: the AWS path on your machine";

async function setUpCommands(): Promise<string[]> {
  const section = sectionOf(await Deno.readTextFile(`${PROJECT_DIR}/${PAGE}`), SECTION);
  const block = codeBlocks(section).find((b) => b.lang === "sh");
  assert.ok(block, `${PAGE}'s "${SECTION}" has a shell block`);
  return shellCommands(block.text);
}

/** `.env.example` with the addresses this test's servers really have. */
async function envFile(replacements: Record<string, string>): Promise<string> {
  let text = await Deno.readTextFile(`${PROJECT_DIR}/.env.example`);
  for (const [name, value] of Object.entries(replacements)) {
    const line = new RegExp(`^${name}=.*$`, "m");
    assert.match(text, line, `.env.example sets ${name}`);
    text = text.replace(line, `${name}=${value}`);
  }
  return text;
}

Deno.test({
  name: "docs/aws.md's Moto set-up runs as written: setup, dev and worker on one moto_server",
  ignore: skipWithoutAwsEmulators(),
  async fn(t) {
    const commands = await setUpCommands();
    const dir = await Deno.makeTempDir({ prefix: "readme-moto-" });
    const vllm = startStandInLlm({ name: "vllm" });
    const port = String(freePort());
    let moto: Moto | undefined;
    const children: { name: string; child: DenoChild }[] = [];
    try {
      await copyProject(PROJECT_DIR, dir);

      for (const command of commands) {
        await t.step(command, async () => {
          const words = shellWords(command);
          if (words[0] === "moto_server") {
            // The page's address is the one .env.example points at; the test's Moto has a free port.
            const [, hostFlag, host, portFlag, motoPort] = words;
            assert.deepEqual([hostFlag, host, portFlag], ["-H", "127.0.0.1", "-p"]);
            const example = await Deno.readTextFile(`${PROJECT_DIR}/.env.example`);
            assert.match(example, new RegExp(`^AWS_ENDPOINT_URL=http://${host}:${motoPort}$`, "m"));
            moto = await startMoto();
          } else if (command === "cp .env.example .env") {
            assert.ok(moto, "moto_server was started before .env is written");
            // One line added to the page's: stopping waits for the worker's last long poll.
            await Deno.writeTextFile(
              `${dir}/.env`,
              (await envFile({
                AWS_ENDPOINT_URL: moto.url,
                PORT: port,
                VLLM_BASE_URL: vllm.baseUrl,
              })) + "\nPOLL_WAIT_S=2\n",
            );
          } else if (command === "deno task setup") {
            const { code, output } = await startDeno(["task", "setup"], { cwd: dir }).exited;
            assert.equal(code, 0, output);
            assert.match(output, /Created queue with dead-letter queue/);
          } else if (command === "deno task dev" || command === "deno task worker") {
            const name = words[2];
            children.push({ name, child: startDeno(["task", name], { cwd: dir }) });
          } else {
            throw new Error(
              `Cannot follow ${PAGE}: the test does not know the command "${command}"`,
            );
          }
        });
      }

      const dev = children.find((c) => c.name === "dev");
      assert.ok(dev && children.some((c) => c.name === "worker"), "the page starts dev and worker");
      const base = `http://127.0.0.1:${port}`;
      await waitUntilUp(`${base}/healthz`, dev.child);

      await t.step("a message sent to the front door is answered by the worker", async () => {
        // The front door answers 503 until it has seen the worker's first heartbeat.
        let res: Response | undefined;
        await eventually(async () => {
          res = await fetch(`${base}/chat`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ conversation_id: "readme", user_message: "Hello Moto" }),
          });
          if (res.status === 503) await res.body?.cancel();
          return res.status !== 503;
        }, "the worker's first heartbeat");
        assert.equal(res!.status, 202, await res!.clone().text());
        const { job_id } = await res!.json();
        const job = await (await fetch(`${base}/jobs/${job_id}?wait=30`)).json();
        assert.equal(job.status, "succeeded", JSON.stringify(job));
        assert.equal(job.reply, "vllm says: Hello Moto");
      });

      await t.step(
        "each process says at start-up that DynamoDB, SQS and S3 are on Moto",
        async () => {
          for (const { child } of children) child.kill("SIGTERM");
          for (const { name, child } of children) {
            const { code, output } = await child.exited;
            assert.equal(code, 0, `${name}:\n${output}`);
            const line = output.split("\n").find((l) => /"(Gateway|Worker) starting"/.test(l));
            assert.ok(line, `${name} logged a start-up line:\n${output}`);
            const fields = JSON.parse(line);
            assert.equal(fields.dynamodb_endpoint, moto!.url);
            assert.equal(fields.sqs_endpoint, moto!.url);
            assert.equal(fields.s3_endpoint, moto!.url);
          }
        },
      );
    } finally {
      for (const { child } of children) child.kill("SIGKILL");
      await Promise.all(children.map(({ child }) => child.exited));
      await vllm.stop();
      await moto?.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
