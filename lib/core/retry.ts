/**
 * Sending failed jobs back to run: one by its id, or every dead letter at once
 * (a redrive). A retry is a new attempt of the same job: `queued` again with
 * its attempts cleared and its `retries` counted, so nothing is appended twice
 * (a job succeeds once) and the job's tickets tell a message sent before the
 * retry from one sent after it.
 *
 * The rule for a conversation: its exchanges stay in the order their jobs
 * were created, and a retried job is never left waiting with nothing to run
 * it. So a failed job of a conversation is retried only while no later job of
 * that conversation has started:
 *   - the conversation holds no exchange of a later job, and
 *   - every later job in its line (the unfinished ones) is still unstarted.
 * The job then takes its place in the line: after the older jobs, before the
 * later ones, which wait for it (their messages already sent go out of date:
 * their generation is counted, and each is sent again when its turn comes).
 * At the head of the line it is sent at once; behind older jobs it is sent
 * when its turn comes, as any job. Otherwise the retry is refused with the
 * reason and the job stays failed: send its message again instead. A
 * stateless job has no line and is always retried.
 *
 * A redrive moves the dead-letter queues' messages back as they are (an SQS
 * move task cannot change them), after recording when it was asked for. The
 * worker then tells a redriven dead letter from a late duplicate by that
 * time: a delivery of a job that failed before the redrive was asked for is a
 * request to retry it, by the same rule; one that failed after is a duplicate.
 * A redriven message whose job cannot be retried goes back to the
 * dead-letter queue, so nothing is lost.
 */
import { errorMessage } from "./error_message.ts";
import { isStateless, type Job } from "./jobs.ts";
import { type Lane, queuesOf, type RedriveResult } from "./queue.ts";
import type { Services } from "./services.ts";
import type { RequeuePlan, Store } from "./store.ts";
import { advanceTurn, sendJob } from "./turns.ts";

/** Why a retry was refused. */
export type RefusalCode = "not_failed" | "conversation_moved_on" | "line_busy";

/** What became of a retry. */
export type RetryResult =
  /** The job is on the queue now. */
  | { state: "sent"; job: Job }
  /** The job waits in its conversation's line behind `behind`, an older job. */
  | { state: "waiting"; job: Job; behind: string }
  | { state: "refused"; code: RefusalCode; reason: string };

/** How many times a retry looks again when the job or its line changed under it. */
const TRIES = 3;
/** The longest line a retry checks job by job. */
const MAX_LINE = 25;

/**
 * Sends a failed job back to run, by the rule above; undefined when there is
 * no such job. Throws when the queue cannot take it (the job is failed again,
 * with that reason).
 */
export async function retryFailedJob(
  services: Services,
  jobId: string,
): Promise<RetryResult | undefined> {
  const { store } = services;
  for (let tries = 0; tries < TRIES; tries++) {
    const job = await store.getJob(jobId);
    if (!job) return undefined;
    if (job.status !== "failed") {
      return refuse("not_failed", `it is ${job.status}; only a failed job can be retried`);
    }
    const stateless = isStateless(job);
    const plan = stateless
      ? { line: [], position: 0, displaced: [] }
      : await placeInLine(store, job);
    if ("state" in plan) return plan;
    const queued = await store.requeueFailedJob(job, plan);
    if (!queued) continue; // the job or its line changed meanwhile: look again
    if (plan.position > 0) {
      return { state: "waiting", job: queued, behind: plan.line[plan.position - 1] };
    }
    try {
      await sendJob(services, queued);
    } catch (err) {
      // The queue's own text names accounts and roles: the caller logs it, the record does not keep it.
      await store.failJob(jobId, "Could not be enqueued for a retry: the queue is unavailable");
      if (!stateless) await advanceTurn(services, job.conversation_id, jobId).catch(() => {});
      throw err;
    }
    return { state: "sent", job: queued };
  }
  return refuse(
    "line_busy",
    "its conversation kept changing while it was being retried; try again",
  );
}

/** Where a failed job goes back in its conversation's line, or why it cannot. */
async function placeInLine(store: Store, job: Job): Promise<RequeuePlan | RetryResult> {
  const [conversation, line] = await Promise.all([
    store.getConversation(job.conversation_id),
    store.lineOf(job.conversation_id),
  ]);
  // Conversations from before `latest_job_at` tell only when they last changed.
  const answeredLater = conversation?.latest_job_at
    ? conversation.latest_job_at > job.created_at
    : conversation !== undefined && job.finished_at !== undefined &&
      conversation.updated_at > job.finished_at;
  if (answeredLater) {
    return refuse(
      "conversation_moved_on",
      "its conversation has moved on: a later message was answered, so its answer would come out of order; send the message again instead",
    );
  }
  if (line.includes(job.job_id)) {
    return refuse(
      "line_busy",
      "its conversation's line still holds it while it is being given up; try again in a minute",
    );
  }
  if (line.length > MAX_LINE) {
    return refuse(
      "line_busy",
      `its conversation has ${line.length} messages waiting; try again when they are done`,
    );
  }
  const others = await Promise.all(line.map((id) => store.getJob(id)));
  // The line is in creation order: the job goes before the first later one.
  let position = others.findIndex((other) =>
    other !== undefined && other.created_at > job.created_at
  );
  if (position < 0) position = line.length;
  const displaced: RequeuePlan["displaced"][number][] = [];
  for (const other of others.slice(position)) {
    if (!other) continue;
    if (other.status !== "queued" || other.attempts > 0) {
      return refuse(
        "conversation_moved_on",
        `a later message of its conversation (job ${other.job_id}) is ${other.status}${
          other.status === "queued" ? " after an attempt" : ""
        }, so its answer would come out of order; send the message again instead`,
      );
    }
    displaced.push({ job_id: other.job_id, generation: other.generation ?? 0 });
  }
  return { line, position, displaced };
}

function refuse(code: RefusalCode, reason: string): RetryResult {
  return { state: "refused", code, reason: `Cannot retry job: ${reason}` };
}

/** What a redrive did to one backend's queues. */
export type BackendRedrive = Record<Lane, RedriveResult | { error: string }>;

/** What a redrive did. */
export interface RedriveReport {
  /** When the redrive was asked for: jobs that failed before it are retried as their messages come back. */
  requested_at: string;
  /** By backend, then lane: how its dead letters were moved back, or why they could not be. */
  backends: Record<string, BackendRedrive>;
  /** How many queues could not be redriven; their dead letters stay where they are. */
  failed: number;
}

/**
 * Records the redrive request, then moves the dead letters of every queue of
 * every backend back to their queues, all queues at once (a copying redrive
 * has a time budget per queue, which this keeps to one budget in all). A
 * queue that fails is reported and leaves the others alone.
 */
export async function redriveDeadLetters(services: Services): Promise<RedriveReport> {
  const requested = await services.store.requestRedrive();
  const queues = queuesOf(services.backends.map((b) => b.name));
  const results = await Promise.all(
    queues.map((queue) =>
      services.queue.redriveDeadLetters(queue, requested).catch((err) => ({
        error: `Cannot redrive backend "${queue.backend}"'s ${queue.lane} dead letters: ${
          errorMessage(err)
        }`,
      }))
    ),
  );
  const backends: Record<string, BackendRedrive> = {};
  queues.forEach((queue, i) => {
    (backends[queue.backend] ??= {} as BackendRedrive)[queue.lane] = results[i];
  });
  return {
    requested_at: requested.toISOString(),
    backends,
    failed: results.filter((r) => "error" in r).length,
  };
}

/**
 * The redrive request a delivered failed job answers, when it is a dead
 * letter an operator asked to redrive: it failed before the last redrive
 * request. Otherwise (undefined) the delivery is a late duplicate.
 */
export async function redriveRequestFor(store: Store, job: Job): Promise<Date | undefined> {
  if (job.status !== "failed" || !job.finished_at) return undefined;
  const requested = await store.lastRedriveRequest();
  return requested !== undefined && Date.parse(job.finished_at) <= requested.getTime()
    ? requested
    : undefined;
}
