/**
 * What the contract tests of the Store and JobQueue interfaces share: jobs to
 * store, replies to complete them with, and waits on a queue's counts and a
 * job's states. The contracts run against every implementation (Deno KV
 * always; DynamoDB Local and Moto for AWS), so they cannot drift.
 */
import assert from "node:assert/strict";
import { type Job, newJob } from "../../lib/core/jobs.ts";
import { userMessage } from "../../lib/core/messages.ts";
import type { JobQueue, QueueDepth, QueueRef, ReceiveOptions } from "../../lib/core/queue.ts";
import { isFinished, type JobResult, type Store } from "../../lib/core/store.ts";
import { eventually } from "./wait.ts";

/** A queued text job of a conversation. */
export function aJob(conversationId = "conv") {
  return newJob({
    conversationId,
    route: "vllm",
    model: "m",
    priority: "normal",
    userMessage: userMessage("hello"),
    ttlDays: 1,
  });
}

export const now: ReceiveOptions = { maxMessages: 10, waitSeconds: 0, visibilitySeconds: 60 };
export const DEFAULT: QueueRef = { backend: "vllm", lane: "default" };
export const PRIORITY: QueueRef = { backend: "vllm", lane: "priority" };
export const LEASE_MS = 60_000;

/**
 * Waits until a queue's counts are `expected`: SQS's are approximate and may
 * lag, where Moto's and the embedded queue's are exact at once.
 */
export async function depthBecomes(
  queue: JobQueue,
  of: QueueRef,
  expected: Partial<QueueDepth>,
): Promise<void> {
  let last: QueueDepth | undefined;
  await eventually(async () => {
    last = await queue.depth(of);
    return JSON.stringify(last) === JSON.stringify({ ...last, ...expected });
  }, `${of.backend}'s ${of.lane} queue to hold ${JSON.stringify(expected)}`).catch((err) => {
    throw new Error(`${err.message}; last seen ${JSON.stringify(last)}`);
  });
}

/** A plain text reply, as a job's result. */
export function replied(text: string): JobResult {
  return {
    reply: { role: "assistant", content: text },
    finishReason: "stop",
    usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
  };
}

/** Claims a job that must be startable, and returns its record. */
export async function started(store: Store, jobId: string): Promise<Job> {
  const claim = await store.startJob(jobId, LEASE_MS);
  assert.equal(claim.state, "started");
  return (claim as { job: Job }).job;
}

/** Follows a job in the background, recording each state, until it ends or is stopped. */
export function follow(store: Store, jobId: string) {
  const controller = new AbortController();
  const seen: (Job | undefined)[] = [];
  const done = (async () => {
    for await (const job of store.watchJob(jobId, controller.signal)) {
      seen.push(job);
      if (!job || isFinished(job)) return;
    }
  })();
  return {
    seen,
    done,
    saw: (what: string, test: (job: Job) => boolean) =>
      eventually(() => seen.some((job) => job && test(job)), what, 10_000),
    stop: () => {
      controller.abort();
      return done;
    },
  };
}

/** A job of `owner` created at `createdAt`. */
export function ownedJob(owner: string | undefined, createdAt: Date, conversationId = "listed") {
  return newJob({
    conversationId,
    route: "vllm",
    model: "m",
    priority: "normal",
    userMessage: userMessage("hello"),
    ttlDays: 1,
    now: createdAt,
    recordFields: owner ? { owner } : undefined,
  });
}
