/**
 * A backend that comes up is shown up as soon as a worker can tell: a job it
 * answers publishes it up at once, and a backend found down is asked again
 * every `MODEL_RETRY_S`, not only every `MODEL_REFRESH_S`.
 */
import assert from "node:assert/strict";
import { backendTest, type TestGateway, type TestGatewayFactory } from "./support/gateway.ts";
import { type BackendSwitch, startBackendSwitch } from "./support/backend_switch.ts";
import { eventually } from "./support/wait.ts";

/** vLLM's status as `/healthz` shows it. */
async function vllmStatus(gateway: TestGateway): Promise<string> {
  const health = await (await gateway.app.request("/healthz")).json();
  return health.backends.vllm.status;
}

/** The model ids `/v1/models` lists. */
async function listed(gateway: TestGateway): Promise<string[]> {
  const body = await (await gateway.app.request("/v1/models")).json();
  return body.data.map((m: { id: string }) => m.id);
}

/** A gateway whose worker starts while vLLM answers 503 to everything, with the worker's refresh and retry periods. */
async function startWithVllmDown(
  start: TestGatewayFactory,
  periods: { MODEL_REFRESH_S: string; MODEL_RETRY_S: string },
): Promise<{ gateway: TestGateway; vllm: BackendSwitch }> {
  const gateway = await start();
  const vllm = startBackendSwitch(gateway.vllm.baseUrl);
  vllm.down = true;
  try {
    await gateway.startWorker({ env: { VLLM_BASE_URL: vllm.baseUrl, ...periods } });
  } catch (err) {
    await vllm.stop();
    throw err;
  }
  return { gateway, vllm };
}

backendTest(
  "a backend down when its worker starts is published up once it answers, within MODEL_RETRY_S",
  async (t, start) => {
    // Only the retry of backends found down can notice: the refresh of all is a day away.
    const { gateway, vllm } = await startWithVllmDown(start, {
      MODEL_REFRESH_S: "86400",
      MODEL_RETRY_S: "1",
    });
    try {
      await t.step("while it refuses, it is published down", async () => {
        assert.equal(await vllmStatus(gateway), "down");
        assert.deepEqual(await listed(gateway), ["test-vision-model"]);
      });

      await t.step("once it answers, the worker's next retry publishes it up", async () => {
        vllm.down = false;
        await eventually(async () => await vllmStatus(gateway) === "up", "vLLM to show as up");
        assert.deepEqual(await listed(gateway), ["test-text-model", "test-vision-model"]);
      });
    } finally {
      await vllm.stop();
    }
  },
);

backendTest(
  "a job that a backend reported down answers publishes the backend up at once",
  async (t, start) => {
    // Neither the refresh nor the retry comes round during the test: only the job can tell.
    const { gateway, vllm } = await startWithVllmDown(start, {
      MODEL_REFRESH_S: "86400",
      MODEL_RETRY_S: "86400",
    });
    try {
      assert.equal(await vllmStatus(gateway), "down");
      vllm.down = false;

      await t.step("its job succeeds, and the worker publishes vLLM up", async () => {
        const { job_id, route } = await gateway.send({ conversation_id: "c", user_message: "hi" });
        assert.equal(route, "vllm");
        const job = await gateway.waitForJob(job_id);
        assert.equal(job.status, "succeeded", job.error);
        await eventually(
          async () => await vllmStatus(gateway) === "up",
          "vLLM to show as up after its job" + gateway.recentLogs(),
          10_000,
        );
      });

      await t.step("and asks it what it serves, so its models are listed again", async () => {
        await eventually(
          async () => (await listed(gateway)).includes("test-text-model"),
          "vLLM's model to be listed",
          10_000,
        );
      });
    } finally {
      await vllm.stop();
    }
  },
);
