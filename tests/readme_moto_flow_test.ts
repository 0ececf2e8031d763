/**
 * The README's Moto set-up, as a user follows it: one `moto_server` for both
 * DynamoDB and SQS, `.env` copied from `.env.example`, `deno task setup`, then
 * `deno task dev` and `deno task worker` as two processes.
 */
import assert from "node:assert/strict";
import { skipWithoutAwsEmulators } from "./support/aws_emulators.ts";
import { copyProject, PROJECT_DIR, startDeno, waitUntilUp } from "./support/child_deno.ts";
import { startMoto } from "./support/moto.ts";
import { freePort } from "./support/net.ts";
import { startStandInLlm } from "./support/stand_in_llm.ts";
import { eventually } from "./support/wait.ts";

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
  name: "the README's Moto set-up runs: setup, dev and worker on one moto_server",
  ignore: skipWithoutAwsEmulators(),
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "readme-moto-" });
    const moto = await startMoto();
    const vllm = startStandInLlm({ name: "vllm" });
    const port = String(freePort());
    const children: ReturnType<typeof startDeno>[] = [];
    try {
      await copyProject(PROJECT_DIR, dir);
      // One line added to the README's: stopping waits for the worker's last long poll.
      await Deno.writeTextFile(
        `${dir}/.env`,
        (await envFile({ AWS_ENDPOINT_URL: moto.url, PORT: port, VLLM_BASE_URL: vllm.baseUrl })) +
          "\nPOLL_WAIT_S=2\n",
      );

      await t.step("deno task setup creates the tables and queues", async () => {
        const { code, output } = await startDeno(["task", "setup"], { cwd: dir }).exited;
        assert.equal(code, 0, output);
        assert.match(output, /Created queue with dead-letter queue/);
      });

      const dev = startDeno(["task", "dev"], { cwd: dir });
      children.push(dev);
      const worker = startDeno(["task", "worker"], { cwd: dir });
      children.push(worker);
      const base = `http://127.0.0.1:${port}`;
      await waitUntilUp(`${base}/healthz`, dev);

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

      await t.step("each process says at start-up that both services are on Moto", async () => {
        for (const child of children) child.kill("SIGTERM");
        for (const [name, child] of [["dev", dev], ["worker", worker]] as const) {
          const { code, output } = await child.exited;
          assert.equal(code, 0, `${name}:\n${output}`);
          const line = output.split("\n").find((l) => /"(Gateway|Worker) starting"/.test(l));
          assert.ok(line, `${name} logged a start-up line:\n${output}`);
          const fields = JSON.parse(line);
          assert.equal(fields.dynamodb_endpoint, moto.url);
          assert.equal(fields.sqs_endpoint, moto.url);
        }
      });
    } finally {
      for (const child of children) child.kill("SIGKILL");
      await Promise.all(children.map((child) => child.exited));
      await vllm.stop();
      await moto.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
