/**
 * `GET /metrics` in Prometheus's text format: the front door's request counts,
 * each backend's queue depths and state, and what each worker publishes in its
 * heartbeat record (when it was seen, per backend, and its counters).
 */
import assert from "node:assert/strict";
import { backendTest, type TestGateway } from "./support/gateway.ts";
import { eventually } from "./support/wait.ts";

/** An admin key: once admin keys are configured, only they may scrape everyone's figures. */
const KEY = "metrics-key";
const USER_KEY = "user-key";

/** One sample of a scrape. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * Reads the text format strictly: every sample belongs to a family declared
 * with HELP and TYPE before it, and every line is a comment or a sample.
 */
function parseExposition(text: string): Sample[] {
  const declared = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.trimEnd().split("\n")) {
    const type = /^# TYPE (\w+) (counter|gauge|histogram)$/.exec(line);
    if (type) {
      declared.set(type[1], type[2]);
      continue;
    }
    if (line.startsWith("# HELP ")) continue;
    const match = /^(\w+)(?:\{(.*)\})? (-?[\d.e+]+|\+Inf|NaN)$/.exec(line);
    assert.ok(match, `not a sample line: ${line}`);
    const [, name, labelText, value] = match;
    const family = name.replace(/_(bucket|sum|count)$/, "");
    assert.ok(declared.has(name) || declared.get(family) === "histogram", `undeclared: ${name}`);
    const labels: Record<string, string> = {};
    for (const pair of (labelText ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[pair[1]] = pair[2];
    }
    samples.push({ name, labels, value: Number(value) });
  }
  return samples;
}

function find(samples: Sample[], name: string, labels: Record<string, string> = {}): Sample[] {
  return samples.filter((s) =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  );
}

async function scrape(gateway: TestGateway, key = KEY): Promise<Sample[]> {
  const res = await gateway.app.request("/metrics", {
    headers: { authorization: `Bearer ${key}` },
  });
  assert.equal(res.status, 200, await res.clone().text());
  assert.equal(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  return parseExposition(await res.text());
}

backendTest(
  "GET /metrics counts requests, each backend's queues and the worker's job runs",
  async (t, start) => {
    const gateway = await start({
      env: { GATEWAY_API_KEYS: USER_KEY, GATEWAY_ADMIN_KEYS: KEY, VISIBILITY_TIMEOUT_S: "3" },
      vllmAnswer: (request) =>
        String(request.messages.at(-1)?.content).includes("fail")
          ? { status: 400, message: "no" }
          : { reply: "yes" },
    });
    // A worker beside vllm only: the ollama backend has none.
    const worker = await gateway.startWorker({ env: { LLM_BACKENDS: "vllm" } });
    const post = async (text: string) => {
      const res = await gateway.app.request("/chat", {
        method: "POST",
        headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
        body: JSON.stringify({ conversation_id: text, user_message: text }),
      });
      return await res.json();
    };
    const ok = await post("fine");
    const bad = await post("fail");
    for (const job of [ok, bad]) await gateway.waitForJob(job.job_id);
    await gateway.app.request(`/jobs/${ok.job_id}`, {
      headers: { authorization: `Bearer ${KEY}` },
    });
    await gateway.app.request("/no-such-route", { headers: { authorization: `Bearer ${KEY}` } });
    await gateway.depthBecomes({ backend: "vllm", lane: "default" }, {
      waiting: 0,
      in_flight: 0,
      dead: 1,
    });

    await t.step("it needs a key like every other route", async () => {
      assert.equal((await gateway.app.request("/metrics")).status, 401);
    });

    await t.step("with admin keys configured, another key may not read it", async () => {
      const res = await gateway.app.request("/metrics", {
        headers: { authorization: `Bearer ${USER_KEY}` },
      });
      assert.equal(res.status, 403);
      const { error } = await res.json();
      assert.equal(error.code, "not_admin");
      assert.match(error.message, /GATEWAY_ADMIN_KEYS/);
    });

    await t.step(
      "requests are counted by method, route and status, never by raw path",
      async () => {
        const samples = await scrape(gateway);
        const requests = (labels: Record<string, string>) =>
          find(samples, "gateway_http_requests_total", labels).map((s) => s.value);
        assert.deepEqual(requests({ method: "POST", route: "/chat", status: "202" }), [2]);
        assert.deepEqual(requests({ method: "GET", route: "/jobs/:job_id", status: "200" }), [1]);
        assert.deepEqual(requests({ method: "GET", route: "unmatched", status: "404" }), [1]);
        assert.deepEqual(requests({ route: "/metrics", status: "401" }), [1]);
        assert.ok(samples.every((s) => !JSON.stringify(s.labels).includes(ok.job_id)));
      },
    );

    await t.step("each backend's queue depths are read at each scrape", async () => {
      const samples = await scrape(gateway);
      const depth = (backend: string, lane: string, state: string) =>
        find(samples, "gateway_queue_messages", { backend, lane, state })[0]?.value;
      assert.deepEqual(
        [
          depth("vllm", "default", "waiting"),
          depth("vllm", "default", "dead"),
          depth("vllm", "priority", "dead"),
          depth("ollama", "default", "dead"),
        ],
        [0, 1, 0, 0],
      );
      assert.equal(
        find(samples, "gateway_queue_messages").length,
        2 * 2 * 3,
        "backends × lanes × states",
      );
      assert.deepEqual(find(samples, "gateway_source_up").map((s) => s.value), [1, 1]);
    });

    await t.step("each backend's state and live workers", async () => {
      const samples = await scrape(gateway);
      const state = (backend: string) =>
        find(samples, "gateway_backend_state", { backend }).filter((s) => s.value === 1)
          .map((s) => s.labels.state);
      assert.deepEqual([state("vllm"), state("ollama")], [["up"], ["no_worker"]]);
      const live = (backend: string) =>
        find(samples, "gateway_backend_live_workers", { backend })[0]?.value;
      assert.deepEqual([live("vllm"), live("ollama")], [1, 0]);
    });

    await t.step("the worker's runs and times come with its heartbeat", async () => {
      let samples: Sample[] = [];
      await eventually(async () => {
        samples = await scrape(gateway);
        return find(samples, "gateway_worker_job_runs_total", { outcome: "failed" }).length > 0;
      }, "the worker to publish its counters");
      const runs = (outcome: string) =>
        find(samples, "gateway_worker_job_runs_total", { backend: "vllm", outcome })[0]?.value;
      assert.deepEqual([runs("succeeded"), runs("failed")], [1, 1]);
      const byApi = find(samples, "gateway_worker_api_runs_total")
        .map((s) => `${s.labels.api} ${s.labels.outcome} ${s.value}`);
      assert.deepEqual(
        byApi.sort(),
        ["chat failed 1", "chat succeeded 1"],
        "by the API that made the jobs: POST /chat",
      );
      for (const name of ["gateway_job_wait_seconds", "gateway_job_run_seconds"]) {
        const count = find(samples, `${name}_count`, { backend: "vllm" })[0]?.value;
        assert.equal(count, 2, name);
        const buckets = find(samples, `${name}_bucket`, { backend: "vllm" }).map((s) => s.value);
        assert.equal(buckets.at(-1), count, `${name}: the +Inf bucket holds every observation`);
        assert.ok(buckets.every((v, i) => i === 0 || v >= buckets[i - 1]), `${name} is cumulative`);
      }
    });

    await t.step("when each worker was last seen, for each backend it serves", async () => {
      const samples = await scrape(gateway);
      const seen = find(samples, "gateway_worker_last_seen_timestamp_seconds");
      assert.deepEqual(seen.map((s) => s.labels.backend), ["vllm"], "the worker serves vllm only");
      assert.equal(seen[0].labels.worker, worker.id.slice(0, 8));
      assert.ok(Math.abs(Date.now() / 1000 - seen[0].value) < 60, `last seen ${seen[0].value}`);
      const started = find(samples, "gateway_worker_start_time_seconds");
      assert.deepEqual(started.map((s) => s.labels.worker), [worker.id.slice(0, 8)]);
    });

    await t.step("a stopping worker publishes its last counts", async () => {
      const third = await post("fine again");
      await gateway.waitForJob(third.job_id);
      await worker.stop();
      const samples = await scrape(gateway);
      assert.equal(
        find(samples, "gateway_worker_job_runs_total", { outcome: "succeeded" })[0]?.value,
        2,
      );
      // Stopped: no longer live, but still seen, until its record is a day old.
      assert.equal(find(samples, "gateway_backend_live_workers", { backend: "vllm" })[0]?.value, 0);
      assert.equal(find(samples, "gateway_worker_last_seen_timestamp_seconds").length, 1);
    });
  },
);

backendTest(
  "with API keys but no admin keys, GET /metrics shows a key its own jobs only",
  async (_t, start) => {
    const gateway = await start({ env: { GATEWAY_API_KEYS: `${KEY},${USER_KEY}` } });
    const post = (key: string, text: string) =>
      gateway.app.request("/chat", {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ conversation_id: text, user_message: text }),
      });
    for (const text of ["one", "two"]) assert.equal((await post(KEY, text)).status, 202);
    assert.equal((await post(USER_KEY, "mine")).status, 202);

    const jobs = (samples: Sample[]) =>
      find(samples, "gateway_key_jobs", { status: "queued" }).map((s) => s.value);
    assert.deepEqual(jobs(await scrape(gateway, KEY)), [2]);
    const other = await scrape(gateway, USER_KEY);
    assert.deepEqual(jobs(other), [1]);
    const names = new Set(other.map((s) => s.name));
    assert.deepEqual([...names].sort(), ["gateway_key_jobs", "gateway_key_jobs_truncated"]);
  },
);

backendTest(
  "a method the client makes up is counted as other, and grows no table",
  async (_t, start) => {
    const gateway = await start();
    // Before any key is checked, and answered 404 (or 401 with keys): 8 KB methods, each new.
    for (let i = 0; i < 200; i++) {
      const method = `M${i}${"Q".repeat(8000)}`;
      const res = await gateway.app.request("/v1/models", { method });
      await res.body?.cancel();
    }
    const res = await gateway.app.request("/metrics");
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.ok(text.length < 20_000, `the scrape is ${text.length} characters`);
    const methods = find(parseExposition(text), "gateway_http_requests_total")
      .map((s) => s.labels.method);
    assert.deepEqual([...new Set(methods)].sort(), ["other"]);
    assert.equal(
      find(parseExposition(text), "gateway_http_requests_total", { method: "other" })
        .reduce((sum, s) => sum + s.value, 0),
      200,
    );
  },
);
