/** `GET /v1/jobs` and `GET /v1/jobs/stats`: a key's own recent jobs, newest first, and its last hour. */
import assert from "node:assert/strict";
import { SUMMARY_FIELDS } from "../lib/core/job_list.ts";
import { median } from "../lib/http/job_list_routes.ts";
import { backendTest, type TestGateway } from "./support/gateway.ts";
import { eventually } from "./support/wait.ts";

const KEY_A = "key-a";
const KEY_B = "key-b";

async function get(gateway: TestGateway, path: string, key: string) {
  const res = await gateway.app.request(path, { headers: { authorization: `Bearer ${key}` } });
  return { status: res.status, body: await res.json() };
}

async function chat(gateway: TestGateway, key: string, text: string): Promise<string> {
  const res = await gateway.app.request("/chat", {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ conversation_id: `list-${text}`, user_message: text }),
  });
  assert.equal(res.status, 202);
  return (await res.json()).job_id;
}

backendTest(
  "GET /v1/jobs lists the caller's jobs newest first, a page at a time",
  async (t, start) => {
    const gateway = await start({
      env: { GATEWAY_API_KEYS: `${KEY_A},${KEY_B}` },
      vllmAnswer: (request) => {
        const text = String(request.messages.at(-1)?.content);
        return text.includes("fail")
          ? { status: 400, message: "cannot answer that" }
          : { reply: `ok: ${text}` };
      },
    });
    await gateway.startWorker();
    const mine: string[] = [];
    for (const text of ["one", "two", "fail three", "four", "five"]) {
      mine.push(await chat(gateway, KEY_A, text));
      await gateway.waitForJob(mine.at(-1)!);
    }
    const theirs = await chat(gateway, KEY_B, "theirs");
    await gateway.waitForJob(theirs);
    // DynamoDB's index is eventually consistent.
    await eventually(
      async () => (await get(gateway, "/v1/jobs", KEY_A)).body.data?.length === 5,
      "every job to be listed",
    );

    await t.step("two pages hold every job of the key, newest first", async () => {
      const first = await get(gateway, "/v1/jobs?limit=3", KEY_A);
      assert.equal(first.status, 200);
      assert.equal(first.body.object, "list");
      assert.equal(first.body.has_more, true);
      const second = await get(
        gateway,
        `/v1/jobs?limit=3&cursor=${encodeURIComponent(first.body.next_cursor)}`,
        KEY_A,
      );
      assert.equal(second.body.has_more, false);
      assert.equal(second.body.next_cursor, null);
      const ids = [...first.body.data, ...second.body.data].map((j: { job_id: string }) =>
        j.job_id
      );
      assert.deepEqual(ids, [...mine].reverse());
    });

    await t.step("each entry says how the job went, and the error of a failed one", async () => {
      const { body } = await get(gateway, "/v1/jobs?limit=5", KEY_A);
      const [five, , failed] = body.data;
      assert.equal(five.status, "succeeded");
      assert.equal(five.conversation_id, "list-five", "the client's conversation id");
      assert.equal(five.route, "vllm");
      assert.equal(five.model, "test-text-model");
      assert.equal(five.attempts, 1);
      assert.ok(five.wait_ms >= 0 && five.run_ms >= 0, JSON.stringify(five));
      assert.equal(five.owner, undefined);
      assert.equal(five.user_message, undefined);
      assert.equal(failed.status, "failed");
      // The backend's own words go to the worker's log only (issue 12).
      assert.match(failed.error, /Backend "vllm" answered 400/);
    });

    await t.step("status=failed lists only failed jobs", async () => {
      const { body } = await get(gateway, "/v1/jobs?status=failed", KEY_A);
      assert.deepEqual(body.data.map((j: { job_id: string }) => j.job_id), [mine[2]]);
    });

    await t.step("another key sees only its own jobs", async () => {
      const { body } = await get(gateway, "/v1/jobs", KEY_B);
      assert.deepEqual(body.data.map((j: { job_id: string }) => j.job_id), [theirs]);
    });

    await t.step("a bad limit, cursor or status is a 400 naming the parameter", async () => {
      for (
        const [query, param] of [
          ["limit=0", "limit"],
          ["limit=101", "limit"],
          ["cursor=not-a-cursor", "cursor"],
          ["status=lost", "status"],
        ]
      ) {
        const { status, body } = await get(gateway, `/v1/jobs?${query}`, KEY_A);
        assert.equal(status, 400, query);
        assert.equal(body.error.param, param, query);
      }
      assert.equal((await get(gateway, "/v1/jobs", "wrong-key")).status, 401);
    });

    await t.step(
      "the stats count the last hour's jobs per minute with their median times",
      async () => {
        const { status, body } = await get(gateway, "/v1/jobs/stats", KEY_A);
        assert.equal(status, 200);
        assert.equal(body.minutes, 60);
        assert.equal(body.buckets.length, 60);
        assert.equal(body.truncated, false);
        const total = body.buckets.reduce((n: number, b: { jobs: number }) => n + b.jobs, 0);
        const failed = body.buckets.reduce((n: number, b: { failed: number }) => n + b.failed, 0);
        assert.deepEqual([total, failed], [5, 1]);
        const busy = body.buckets.filter((b: { jobs: number }) => b.jobs > 0);
        assert.ok(busy.every((b: { run_p50_ms: number | null }) => b.run_p50_ms !== null));
        assert.equal(
          (await get(gateway, "/v1/jobs/stats?minutes=0", KEY_A)).body.error.param,
          "minutes",
        );
      },
    );
  },
);

Deno.test("median() takes the middle value, or the mean of the two middle ones", () => {
  assert.equal(median([]), null);
  assert.equal(median([undefined, 5]), 5);
  assert.equal(median([9, 1, 5]), 5);
  assert.equal(median([4, 1, 2, 3]), 3);
});

Deno.test("template.yaml's by-owner index projects exactly the fields of a job summary", async () => {
  const template = await Deno.readTextFile(new URL("../template.yaml", import.meta.url));
  const block = /IndexName: by-owner[\s\S]*?NonKeyAttributes:\n((?:\s+- \w+\n)+)/.exec(template);
  assert.ok(block, "the index is in the template");
  const projected = [...block[1].matchAll(/- (\w+)/g)].map((m) => m[1]);
  const keys = ["job_id", "created_at"];
  assert.deepEqual(projected.sort(), SUMMARY_FIELDS.filter((f) => !keys.includes(f)).sort());
});
