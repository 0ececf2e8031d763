import assert from "node:assert/strict";
import type { ErrorBody } from "../lib/http/errors.ts";
import { backendTest, type TestGateway } from "./support/gateway.ts";
import { echoAnswer } from "./support/stand_in_llm.ts";
import { within } from "./support/wait.ts";

async function post(gateway: TestGateway, path: string, body: unknown, key?: string) {
  return await gateway.app.request(path, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(key ? { authorization: `Bearer ${key}` } : {}),
    },
    body: JSON.stringify(body),
  });
}

async function get(gateway: TestGateway, path: string, key?: string) {
  return await gateway.app.request(path, {
    headers: key ? { authorization: `Bearer ${key}` } : {},
  });
}

backendTest("GET /jobs/:id?wait=N answers once the job has finished", async (t, start) => {
  const echo = echoAnswer("vllm");
  const gateway = await start({
    vllmAnswer: async (request) => {
      await new Promise((r) => setTimeout(r, 300));
      return echo(request);
    },
  });
  await gateway.startWorker();
  const { job_id } =
    await (await post(gateway, "/chat", { conversation_id: "w", user_message: "hi" })).json();

  await t.step("without wait the job is read as it is", async () => {
    const job = await (await get(gateway, `/jobs/${job_id}`)).json();
    assert.ok(["queued", "running"].includes(job.status), job.status);
  });

  await t.step("with wait the answer comes when it is done", async () => {
    const job = await (await get(gateway, `/jobs/${job_id}?wait=30`)).json();
    assert.equal(job.status, "succeeded");
    assert.equal(job.reply, "vllm says: hi");
    assert.equal(job.owner, undefined, "internal fields are not shown");
    assert.equal(job.lease_until, undefined);
  });

  await t.step("a wait that is not a whole number of seconds in range is a 400", async () => {
    for (const wait of ["-1", "soon", "100000"]) {
      const res = await get(gateway, `/jobs/${job_id}?wait=${wait}`);
      assert.equal(res.status, 400);
      assert.equal((await res.json() as ErrorBody).error.param, "wait");
    }
  });
});

backendTest(
  "a queued job can be canceled and the worker skips it; a finished one cannot",
  async (t, start) => {
    const gateway = await start();
    const first =
      await (await post(gateway, "/chat", { conversation_id: "c", user_message: "keep me" }))
        .json();
    const second =
      await (await post(gateway, "/chat", { conversation_id: "c", user_message: "cancel me" }))
        .json();
    const third =
      await (await post(gateway, "/chat", { conversation_id: "c", user_message: "and me" })).json();

    await t.step("canceling a queued job answers with the canceled job", async () => {
      const res = await post(gateway, `/jobs/${second.job_id}/cancel`, {});
      assert.equal(res.status, 200);
      assert.equal((await res.json()).status, "canceled");
    });

    await t.step("the worker runs the others in order and never the canceled one", async () => {
      await gateway.startWorker();
      assert.equal((await gateway.waitForJob(first.job_id)).status, "succeeded");
      assert.equal((await gateway.waitForJob(third.job_id)).status, "succeeded");
      assert.equal((await gateway.services.store.getJob(second.job_id))?.status, "canceled");
      assert.deepEqual(gateway.vllm.requests.map((r) => r.messages.at(-1)?.content), [
        "keep me",
        "and me",
      ]);
      const stored = await (await get(gateway, "/conversation?conversation_id=c")).json();
      assert.equal(stored.messages.length, 4);
    });

    await t.step("a finished job cannot be canceled", async () => {
      const res = await post(gateway, `/jobs/${first.job_id}/cancel`, {});
      assert.equal(res.status, 409);
      assert.equal((await res.json() as ErrorBody).error.code, "not_cancelable");
    });

    await t.step("an unknown job is a 404", async () => {
      assert.equal((await post(gateway, "/jobs/nope/cancel", {})).status, 404);
    });
  },
);

backendTest("a finished job is POSTed to its callback_url", async (_t, start) => {
  const received: unknown[] = [];
  const arrived = Promise.withResolvers<void>();
  const receiver = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (req) => {
      received.push(await req.json());
      arrived.resolve();
      return new Response("ok");
    },
  );
  try {
    const host = `127.0.0.1:${receiver.addr.port}`;
    const gateway = await start({ env: { CALLBACK_ALLOWED_HOSTS: host } });
    await gateway.startWorker();
    const res = await post(gateway, "/chat", {
      conversation_id: "cb",
      user_message: "call me back",
      callback_url: `http://${host}/hook`,
    });
    const { job_id } = await res.json();
    await within(arrived.promise, "the backend to receive the request");
    assert.equal(received.length, 1);
    const job = received[0] as Record<string, unknown>;
    assert.equal(job.job_id, job_id);
    assert.equal(job.status, "succeeded");
    assert.equal(job.reply, "vllm says: call me back");
    assert.equal(job.conversation_id, "cb");
  } finally {
    await receiver.shutdown();
  }
});

backendTest("two API keys never see each other's conversations or jobs", async (t, start) => {
  const gateway = await start({ env: { GATEWAY_API_KEYS: "key-alice,key-bob" } });
  await gateway.startWorker();
  const alice = await (await post(gateway, "/chat", {
    conversation_id: "shared-name",
    user_message: "alice's secret",
  }, "key-alice"))
    .json();
  await gateway.waitForJob(alice.job_id);

  await t.step("the owner reads the conversation and the job", async () => {
    assert.equal(
      (await get(gateway, "/conversation?conversation_id=shared-name", "key-alice")).status,
      200,
    );
    const job = await (await get(gateway, `/jobs/${alice.job_id}`, "key-alice")).json();
    assert.equal(job.conversation_id, "shared-name");
  });

  await t.step("another key gets 404 for both, and cannot cancel the job", async () => {
    assert.equal(
      (await get(gateway, "/conversation?conversation_id=shared-name", "key-bob")).status,
      404,
    );
    assert.equal((await get(gateway, `/jobs/${alice.job_id}`, "key-bob")).status, 404);
    assert.equal((await post(gateway, `/jobs/${alice.job_id}/cancel`, {}, "key-bob")).status, 404);
  });

  await t.step("the same conversation_id under another key is another conversation", async () => {
    const bob = await (await post(gateway, "/chat", {
      conversation_id: "shared-name",
      user_message: "bob here",
    }, "key-bob"))
      .json();
    assert.equal(bob.history_messages, 0);
    await gateway.waitForJob(bob.job_id);
    assert.deepEqual(gateway.vllm.requests.at(-1)!.messages, [{
      role: "user",
      content: "bob here",
    }]);
    const mine = await (await get(gateway, "/conversation?conversation_id=shared-name", "key-bob"))
      .json();
    assert.deepEqual(mine.messages.map((m: { content: string }) => m.content), [
      "bob here",
      "vllm says: bob here",
    ]);
  });
});

backendTest("CORS is off unless CORS_ORIGINS lists the origin", async (t, start) => {
  const preflight = (gateway: TestGateway, origin: string) =>
    gateway.app.request("/v1/chat/completions", {
      method: "OPTIONS",
      headers: {
        origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization",
      },
    });

  await t.step("without CORS_ORIGINS no CORS header is sent", async () => {
    const gateway = await start();
    const res = await gateway.app.request("/healthz", {
      headers: { origin: "http://webui.example" },
    });
    assert.equal(res.headers.get("access-control-allow-origin"), null);
  });

  await t.step("a listed origin is allowed, with the Authorization header", async () => {
    const gateway = await start({
      env: { CORS_ORIGINS: "http://webui.example", GATEWAY_API_KEYS: "k" },
    });
    const res = await preflight(gateway, "http://webui.example");
    assert.equal(res.status, 204);
    assert.equal(res.headers.get("access-control-allow-origin"), "http://webui.example");
    assert.match(res.headers.get("access-control-allow-headers") ?? "", /authorization/i);
    // Open WebUI's direct connections send these headers when set up as the README shows.
    for (const header of ["x-conversation-id", "x-openwebui-chat-id", "x-openwebui-task"]) {
      assert.match(res.headers.get("access-control-allow-headers") ?? "", new RegExp(header, "i"));
    }
    const other = await preflight(gateway, "http://evil.example");
    assert.notEqual(other.headers.get("access-control-allow-origin"), "http://evil.example");
  });
});
