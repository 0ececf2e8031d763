/**
 * What a client learns when a backend fails: the backend's name and a short
 * reason. The backend's URL (never its password) and its own words go to the
 * worker's log only.
 */
import assert from "node:assert/strict";
import { describeConfig } from "../lib/core/config.ts";
import { createLogger } from "../lib/core/log.ts";
import { backendTest } from "./support/gateway.ts";
import { startStandInLlm } from "./support/stand_in_llm.ts";
import { eventually } from "./support/wait.ts";

const PASSWORD = "hunter2-backend";
const UPSTREAM_TEXT = "Traceback: /srv/vllm/internal/engine.py line 42";

backendTest(
  "a failing backend's URL, password and text reach the log, never the client",
  async (t, start) => {
    const vllm = startStandInLlm({
      name: "vllm",
      answer: () => ({ status: 400, message: UPSTREAM_TEXT }),
    });
    try {
      // The backend's URL with a user name and password, as an operator might configure it.
      const shownUrl = vllm.baseUrl;
      const gateway = await start({
        env: { VLLM_BASE_URL: shownUrl.replace("http://", `http://gw:${PASSWORD}@`) },
      });
      const lines: string[] = [];
      await gateway.startWorker({ logger: createLogger({ write: (l) => lines.push(l) }) });

      await t.step("the start-up description leaves the password out", () => {
        const described = JSON.stringify(describeConfig(gateway.config));
        assert.ok(!described.includes(PASSWORD), described);
        assert.ok(described.includes(shownUrl), described);
      });

      await t.step("GET /jobs/:id says which backend failed and how, nothing more", async () => {
        const { job_id } = await gateway.send({ conversation_id: "c", user_message: "Hi" });
        assert.equal((await gateway.waitForJob(job_id)).status, "failed");
        const body = await (await gateway.app.request(`/jobs/${job_id}`)).text();
        assert.match(body, /Failed for good: Backend \\"vllm\\" answered 400/);
        for (const hidden of [PASSWORD, UPSTREAM_TEXT, "127.0.0.1", "/chat/completions"]) {
          assert.ok(!body.includes(hidden), `the client saw "${hidden}": ${body}`);
        }
      });

      await t.step("a 502 from /v1/chat/completions says the same", async () => {
        const res = await gateway.app.request("/v1/chat/completions", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ messages: [{ role: "user", content: "Hi" }] }),
        });
        assert.equal(res.status, 502);
        const body = await res.text();
        assert.match(body, /Backend \\"vllm\\" answered 400/);
        for (const hidden of [PASSWORD, UPSTREAM_TEXT, "127.0.0.1"]) {
          assert.ok(!body.includes(hidden), `the client saw "${hidden}": ${body}`);
        }
      });

      await t.step(
        "the worker's log has the URL without the password, and the backend's text",
        async () => {
          // The front door may answer as soon as the job record fails, before the worker logs it.
          const failed = () => lines.filter((l) => l.includes("Job failed"));
          await eventually(() => failed().length === 2, "both failures to be logged");
          const failures = failed();
          for (const line of failures) {
            assert.ok(line.includes(`${shownUrl}/chat/completions answered 400`), line);
            assert.ok(line.includes(UPSTREAM_TEXT), line);
          }
          assert.ok(lines.every((l) => !l.includes(PASSWORD)), "no log line holds the password");
        },
      );
    } finally {
      await vllm.stop();
    }
  },
);

backendTest(
  "an unreachable backend fails the job naming the backend and its variable; the log has the URL",
  async (_t, start) => {
    const gateway = await start({ env: { MAX_ATTEMPTS: "1" } });
    await gateway.vllm.stop();
    const lines: string[] = [];
    await gateway.startWorker({ logger: createLogger({ write: (l) => lines.push(l) }) });
    const { job_id } = await gateway.send({ conversation_id: "offline", user_message: "Hi" });
    const job = await gateway.waitForJob(job_id);
    assert.equal(job.status, "failed");
    assert.match(
      job.error ?? "",
      /Cannot reach backend "vllm" \(check VLLM_BASE_URL on the worker\)/,
    );
    assert.ok(!job.error?.includes(gateway.vllm.baseUrl), job.error);
    // The job record fails before the worker logs it.
    await eventually(() => lines.some((l) => l.includes("Job failed")), "the failure to be logged");
    const failure = lines.find((l) => l.includes("Job failed")) ?? "";
    assert.ok(failure.includes(`${gateway.vllm.baseUrl}/chat/completions`), failure);
  },
);
