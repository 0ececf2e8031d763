import assert from "node:assert/strict";
import { fingerprint, followJob, JobChanges } from "../lib/core/job_changes.ts";
import { type Job, newJob } from "../lib/core/jobs.ts";
import { userMessage } from "../lib/core/messages.ts";
import { JobPoller, readDelayMs } from "../lib/storage/aws/job_poller.ts";
import { within } from "./support/wait.ts";

function aJob(changes: Partial<Job> = {}): Job {
  return {
    ...newJob({
      conversationId: "c",
      route: "vllm",
      model: "m",
      priority: "normal",
      userMessage: userMessage("hi"),
      ttlDays: 1,
    }),
    ...changes,
  };
}

/** Takes the next state of a follow, failing the test if none comes. */
function next(follow: AsyncGenerator<Job | undefined>) {
  return within(follow.next(), "the next state of the follow", 5_000);
}

Deno.test("followJob() yields the state read first, then each published change, then ends on abort", async () => {
  const changes = new JobChanges();
  const queued = aJob();
  const controller = new AbortController();
  const follow = followJob(changes, queued.job_id, controller.signal, {
    read: () => Promise.resolve(queued),
  });
  assert.equal((await next(follow)).value?.status, "queued");
  const running = { ...queued, status: "running" as const, attempts: 1, updated_at: "t1" };
  changes.publish(queued.job_id, { job: running });
  assert.equal((await next(follow)).value?.status, "running");
  changes.publish(queued.job_id, { partial: { content: "He" } });
  assert.equal((await next(follow)).value?.partial, "He");
  changes.publish(queued.job_id, { job: { ...running, lease_until: 5 } });
  changes.publish(queued.job_id, { partial: { content: "Hello" } });
  const latest = (await next(follow)).value;
  assert.equal(latest?.partial, "Hello", "notices that came together give their latest state");
  controller.abort();
  assert.equal((await next(follow)).done, true);
  assert.equal(changes.isFollowed(queued.job_id), false, "the follow unsubscribed");
});

Deno.test("followJob() keeps the reply so far across a record without it, and skips unchanged states", async () => {
  const changes = new JobChanges();
  const running = aJob({ status: "running", attempts: 1, stream: true });
  const controller = new AbortController();
  const follow = followJob(changes, running.job_id, controller.signal, {
    read: () => Promise.resolve(running),
  });
  await next(follow);
  changes.publish(running.job_id, { partial: { content: "abc" } });
  assert.equal((await next(follow)).value?.partial, "abc");
  // A lease renewal: the same attempt, written without the reply so far.
  changes.publish(running.job_id, { job: { ...running, lease_until: Date.now() } });
  changes.publish(running.job_id, { job: { ...running, status: "succeeded", reply: "abcd" } });
  const done = (await next(follow)).value;
  assert.equal(done?.status, "succeeded", "the renewal changed nothing worth showing");
  controller.abort();
  await next(follow);
});

Deno.test("followJob() yields undefined once for a missing job, and throws a failed read", async () => {
  const changes = new JobChanges();
  const missing = followJob(changes, "nope", new AbortController().signal, {
    read: () => Promise.resolve(undefined),
  });
  assert.deepEqual(await next(missing), { value: undefined, done: false });
  assert.equal((await next(missing)).done, true);

  const job = aJob();
  const controller = new AbortController();
  const failing = followJob(changes, job.job_id, controller.signal, {
    read: () => Promise.resolve(job),
  });
  await next(failing);
  changes.publish(job.job_id, { error: new Error("Cannot read job: table is gone") });
  await assert.rejects(() => next(failing), /table is gone/);
});

Deno.test("followJob() re-reads after recheckMs when no notice comes (a write from another process)", async () => {
  const changes = new JobChanges();
  let stored = aJob();
  const controller = new AbortController();
  const follow = followJob(changes, stored.job_id, controller.signal, {
    read: () => Promise.resolve(stored),
    recheckMs: 20,
  });
  await next(follow);
  stored = { ...stored, status: "succeeded", reply: "done elsewhere", updated_at: "later" };
  assert.equal((await next(follow)).value?.reply, "done elsewhere");
  controller.abort();
  await next(follow);
});

Deno.test("fingerprint() tells states apart by what a waiting request shows", () => {
  const job = aJob();
  assert.equal(fingerprint(job), fingerprint({ ...job, lease_until: 1 }));
  assert.notEqual(fingerprint(job), fingerprint({ ...job, partial: "a" }));
  assert.notEqual(fingerprint(job), fingerprint({ ...job, status: "running" }));
  assert.equal(fingerprint(undefined), "");
});

Deno.test("readDelayMs() reads quickly at first, backs off to once a second, and keeps a stream quick", () => {
  const queued = aJob();
  assert.equal(readDelayMs(queued, 0), 50);
  assert.equal(readDelayMs(queued, 9_999), 50);
  assert.equal(readDelayMs(queued, 35_000), 525);
  assert.equal(readDelayMs(queued, 60_000), 1000);
  assert.equal(readDelayMs(queued, 600_000), 1000);
  const streaming = aJob({ status: "running", stream: true });
  assert.equal(readDelayMs(streaming, 120_000), 30);
  assert.equal(readDelayMs(aJob({ status: "succeeded" }), 0), 1000);
});

Deno.test("JobPoller reads every followed job in one call, and only the replies so far of running streamed jobs", async () => {
  const jobs = new Map<string, Job>();
  for (let i = 0; i < 150; i++) {
    const job = aJob(i === 0 ? { status: "running", stream: true } : {});
    jobs.set(job.job_id, job);
  }
  const calls: { ids: string[]; withPartial: string[] }[] = [];
  const poller = new JobPoller((ids, withPartial) => {
    calls.push({ ids, withPartial: [...withPartial] });
    return Promise.resolve({
      jobs: new Map(ids.flatMap((id) => jobs.has(id) ? [[id, jobs.get(id)!]] : [])),
      unprocessed: new Set(),
    });
  });
  const seen = new Map<string, Job | undefined>();
  const stops = [...jobs.keys()].map((id) =>
    poller.subscribe(id, (notice) => {
      if ("job" in notice) seen.set(id, notice.job);
    })
  );
  try {
    const [streamed] = jobs.keys();
    await within(
      (async () => {
        while (!calls.some((c) => c.withPartial.includes(streamed))) {
          await new Promise((r) => setTimeout(r, 10));
        }
      })(),
      "a read of the streamed job's reply so far",
      5_000,
    );
    assert.equal(seen.size, 150, "every follower was told its job");
    const [first, second] = calls;
    assert.deepEqual(
      [first.ids.length, second.ids.length],
      [100, 50],
      "the first reads take 100 keys a call (BatchGetItem's limit)",
    );
    assert.ok(
      calls.every((c) => c.withPartial.every((id) => id === streamed)),
      "only the running streamed job's reply so far is read",
    );
  } finally {
    stops.forEach((stop) => stop());
  }
  assert.equal(poller.size, 0, "nothing is followed once everyone left");
});
