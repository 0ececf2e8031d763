/** The worker's counters, which travel in its heartbeat record (lib/core/metrics.ts, lib/worker/metrics.ts). */
import assert from "node:assert/strict";
import { newJob } from "../lib/core/jobs.ts";
import { userMessage } from "../lib/core/messages.ts";
import { emptyHistogram, observe, TIME_BUCKETS } from "../lib/core/metrics.ts";
import { WorkerMetrics } from "../lib/worker/metrics.ts";

Deno.test("observe() counts each value in the first bucket that holds it, the rest in the last", () => {
  const histogram = emptyHistogram();
  for (const seconds of [0.01, 0.05, 0.3, 7200, -1]) observe(histogram, seconds);
  assert.equal(histogram.counts.length, TIME_BUCKETS.length + 1);
  assert.equal(histogram.counts[0], 3, "0.01, 0.05 and a negative time (as 0)");
  assert.equal(histogram.counts[TIME_BUCKETS.indexOf(0.5)], 1);
  assert.equal(histogram.counts.at(-1), 1, "above every bound");
  assert.deepEqual([histogram.count, histogram.sum], [5, 0.01 + 0.05 + 0.3 + 7200]);
});

Deno.test("observe() leaves out a value that is not a finite number, which no store would keep", () => {
  const histogram = emptyHistogram();
  for (const seconds of [NaN, Infinity, -Infinity]) observe(histogram, seconds);
  assert.deepEqual(histogram, emptyHistogram());
});

Deno.test("WorkerMetrics times every run, and the wait of a job's first run from when it was queued or sent back", () => {
  const job = newJob({
    conversationId: "c",
    route: "vllm",
    model: "m",
    priority: "normal",
    userMessage: userMessage("hi"),
    ttlDays: 1,
    now: new Date("2026-01-01T00:00:00.000Z"),
  });
  const metrics = new WorkerMetrics(new Date("2026-01-01T00:00:00.000Z"));
  metrics.timeRun({
    job: { ...job, attempts: 1, started_at: "2026-01-01T00:00:02.000Z" },
    ms: 300,
  });
  metrics.timeRun({
    job: { ...job, attempts: 2, started_at: "2026-01-01T00:01:00.000Z" },
    ms: 200,
  });
  metrics.timeRun({
    job: {
      ...job,
      attempts: 1,
      retried_at: "2026-01-01T01:00:00.000Z",
      started_at: "2026-01-01T01:00:01.000Z",
    },
    ms: 100,
  });
  metrics.countRun("vllm", "succeeded");
  metrics.countRun("vllm", "succeeded");
  metrics.countRun("", "line_checked");
  const counters = metrics.snapshot();
  assert.equal(counters.started_at, "2026-01-01T00:00:00.000Z");
  assert.deepEqual(counters.runs, { vllm: { succeeded: 2 }, none: { line_checked: 1 } });
  assert.deepEqual(
    [counters.run_seconds.vllm.count, Math.round(counters.run_seconds.vllm.sum * 1000)],
    [3, 600],
  );
  assert.deepEqual(
    [counters.wait_seconds.vllm.count, counters.wait_seconds.vllm.sum],
    [2, 3],
    "2 s from creation, 1 s from the retry; the second attempt's wait is not a queue wait",
  );
  counters.runs.vllm.succeeded = 99;
  assert.equal(metrics.snapshot().runs.vllm.succeeded, 2, "a snapshot is a copy");
});

Deno.test("WorkerMetrics counts the runs that started a job by the API that made it, in known names only", () => {
  const job = newJob({
    conversationId: "c",
    route: "vllm",
    model: "m",
    priority: "normal",
    userMessage: userMessage("hi"),
    ttlDays: 1,
  });
  const metrics = new WorkerMetrics();
  metrics.runEnded({ job: { ...job, api: "embeddings" }, outcome: "succeeded", ms: 10 });
  metrics.runEnded({ job: { ...job, api: "embeddings" }, outcome: "retrying", ms: 10 });
  metrics.runEnded({ job: { ...job, api: "chat" }, outcome: "succeeded", ms: 10 });
  metrics.runEnded({ job, outcome: "failed", ms: 10 });
  metrics.runEnded({ job: { ...job, api: "made-up" as "chat" }, outcome: "failed", ms: 10 });
  const counters = metrics.snapshot();
  assert.deepEqual(counters.api_runs, {
    embeddings: { succeeded: 1, retrying: 1 },
    chat: { succeeded: 1 },
    unknown: { failed: 2 },
  });
  assert.equal(counters.run_seconds.vllm.count, 5, "each run is timed as well");
});
