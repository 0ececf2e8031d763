/**
 * `Idempotency-Key`: a client that sends a request again, after an error or
 * an answer it never got, gets the first request's job and never a second.
 */
import assert from "node:assert/strict";
import { newJob } from "../lib/core/jobs.ts";
import { userMessage } from "../lib/core/messages.ts";
import { idempotencyClaim } from "../lib/http/idempotency.ts";
import { backendTest, type TestGateway } from "./support/gateway.ts";

/** POSTs `body` to `path` in-process, with the given key and bearer token. */
function post(
  gateway: TestGateway,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return Promise.resolve(gateway.app.request(path, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  }));
}

Deno.test("idempotencyClaim() scopes a key to its API key and tells bodies apart, whatever their key order", async () => {
  const request = {
    key: "k-1",
    owner: "owner-a",
    route: "/chat",
    body: { a: 1, b: { c: 2, d: 3 } },
  };
  const claim = (await idempotencyClaim(request))!;
  const reordered = await idempotencyClaim({ ...request, body: { b: { d: 3, c: 2 }, a: 1 } });
  assert.equal(reordered?.id, claim.id);
  assert.equal(reordered?.fingerprint, claim.fingerprint);
  assert.notEqual((await idempotencyClaim({ ...request, owner: "owner-b" }))?.id, claim.id);
  assert.notEqual(
    (await idempotencyClaim({ ...request, body: { a: 2, b: { c: 2, d: 3 } } }))?.fingerprint,
    claim.fingerprint,
  );
  assert.notEqual(
    (await idempotencyClaim({ ...request, route: "/v1/chat/completions" }))?.fingerprint,
    claim.fingerprint,
  );
  assert.equal(await idempotencyClaim({ ...request, key: undefined }), undefined);
  assert.ok(!claim.id.includes("k-1") && !claim.id.includes("owner-a"), "the id is a digest");
});

backendTest(
  "POST /chat with an Idempotency-Key makes one job however often it is sent",
  async (t, start) => {
    const gateway = await start();
    await gateway.startWorker();
    const body = { conversation_id: "once", user_message: "only once, please" };
    const key = { "idempotency-key": crypto.randomUUID() };

    const first = await post(gateway, "/chat", body, key);
    assert.equal(first.status, 202);
    assert.equal(first.headers.get("idempotent-replayed"), null);
    const accepted = await first.json();

    await t.step("a repeat answers with the first request's job, marked as replayed", async () => {
      const again = await post(gateway, "/chat", body, key);
      assert.equal(again.status, 202);
      assert.equal(again.headers.get("idempotent-replayed"), "true");
      const repeated = await again.json();
      assert.equal(repeated.job_id, accepted.job_id);
      assert.equal(repeated.conversation_id, "once");
      assert.equal(repeated.history_messages, accepted.history_messages);
    });

    await t.step("after the job ran, a repeat still names it, and nothing ran twice", async () => {
      assert.equal((await gateway.waitForJob(accepted.job_id)).status, "succeeded");
      const late = await (await post(gateway, "/chat", body, key)).json();
      assert.equal(late.job_id, accepted.job_id);
      assert.equal(late.status, "succeeded");
      assert.equal((await gateway.jobRecords()).length, 1);
      assert.deepEqual((await gateway.storedMessages("once")).map((m) => m.content), [
        "only once, please",
        "vllm says: only once, please",
      ]);
    });

    await t.step(
      "the same key with another body is a 409 the client should not retry",
      async () => {
        const other = await post(
          gateway,
          "/chat",
          { ...body, user_message: "something else" },
          key,
        );
        assert.equal(other.status, 409);
        assert.equal(other.headers.get("x-should-retry"), "false");
        const { error } = await other.json();
        assert.equal(error.code, "idempotency_key_reused");
        assert.equal(error.param, "Idempotency-Key");
        assert.equal(error.job_id, accepted.job_id);
        assert.equal((await gateway.jobRecords()).length, 1, "nothing was written");
      },
    );

    await t.step(
      "a key that is empty, too long or has spaces is a 400 naming the header",
      async () => {
        for (const bad of ["", "x".repeat(256), "two words", "tab\there"]) {
          const res = await post(gateway, "/chat", body, { "idempotency-key": bad });
          assert.equal(res.status, 400, JSON.stringify(bad));
          assert.equal((await res.json()).error.param, "Idempotency-Key");
        }
        assert.equal((await gateway.jobRecords()).length, 1, "nothing was written");
      },
    );
  },
);

backendTest(
  "an Idempotency-Key belongs to its API key: another key's request with it makes its own job",
  async (_t, start) => {
    const gateway = await start({ env: { GATEWAY_API_KEYS: "key-a,key-b" } });
    const body = { conversation_id: "shared", user_message: "hello" };
    const sent = await Promise.all(["key-a", "key-b"].map(async (apiKey) => {
      const res = await post(gateway, "/chat", body, {
        authorization: `Bearer ${apiKey}`,
        "idempotency-key": "same-key",
      });
      assert.equal(res.status, 202);
      return (await res.json()).job_id;
    }));
    assert.notEqual(sent[0], sent[1]);
    assert.equal((await gateway.jobRecords()).length, 2);
  },
);

backendTest(
  "POST /v1/chat/completions repeated with its Idempotency-Key answers the same completion from one job",
  async (_t, start) => {
    const gateway = await start();
    await gateway.startWorker();
    const body = { model: "test-text-model", messages: [{ role: "user", content: "Hi there" }] };
    const key = { "idempotency-key": "completion-1" };
    const [first, second] = await Promise.all([
      post(gateway, "/v1/chat/completions", body, key),
      post(gateway, "/v1/chat/completions", body, key),
    ]);
    assert.equal(first.status, 200);
    assert.equal(second.status, 200);
    const [a, b] = [await first.json(), await second.json()];
    assert.equal(a.id, b.id);
    assert.equal(a.choices[0].message.content, "vllm says: Hi there");
    assert.equal(b.choices[0].message.content, a.choices[0].message.content);
    assert.equal(
      [first, second].filter((r) => r.headers.get("idempotent-replayed") === "true").length,
      1,
      "one of the two was the repeat",
    );
    assert.equal((await gateway.jobRecords()).length, 1);
    assert.equal(gateway.vllm.requests.length, 1, "the model was asked once");
  },
);

backendTest(
  "a repeat of a request whose front door stopped before queuing its job sends that job",
  async (_t, start) => {
    const gateway = await start();
    await gateway.startWorker();
    const body = { conversation_id: "cut-off", user_message: "lost in the crash" };
    const key = "cut-off-key";
    // What a front door that died after writing the job, and before sending it, leaves.
    const claim = (await idempotencyClaim({ key, owner: undefined, route: "/chat", body }))!;
    const stranded = newJob({
      conversationId: "cut-off",
      route: "vllm",
      model: "test-text-model",
      priority: "normal",
      userMessage: userMessage("lost in the crash"),
      ttlDays: 1,
      // Long enough ago that its own request would have sent it by now.
      now: new Date(Date.now() - 60_000),
    });
    await gateway.services.store.createJob(stranded, { idempotency: claim });

    const res = await post(gateway, "/chat", body, { "idempotency-key": key });
    assert.equal(res.status, 202);
    assert.equal((await res.json()).job_id, stranded.job_id);
    assert.equal((await gateway.waitForJob(stranded.job_id)).status, "succeeded");
    assert.equal((await gateway.jobRecords()).length, 1);
  },
);

backendTest(
  "a request whose job the queue refused frees its key: the retry makes the job, which runs",
  async (_t, start) => {
    const gateway = await start();
    const body = { conversation_id: "refused", user_message: "second time lucky" };
    const key = { "idempotency-key": "refused-key" };
    const queue = gateway.services.queue;
    const send = queue.send.bind(queue);
    queue.send = () => Promise.reject(new Error("queue unreachable"));
    const refused = await post(gateway, "/chat", body, key);
    assert.equal(refused.status, 503);
    const failedId = (await gateway.jobRecords())[0].job_id;
    assert.equal((await gateway.services.store.getJob(failedId))?.status, "failed");

    queue.send = send;
    await gateway.startWorker();
    const retried = await post(gateway, "/chat", body, key);
    assert.equal(retried.status, 202);
    assert.equal(retried.headers.get("idempotent-replayed"), null);
    const { job_id } = await retried.json();
    assert.notEqual(job_id, failedId);
    assert.equal((await gateway.waitForJob(job_id)).status, "succeeded");
    assert.deepEqual((await gateway.storedMessages("refused")).map((m) => m.content), [
      "second time lucky",
      "vllm says: second time lucky",
    ]);
  },
);
