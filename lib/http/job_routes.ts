/** The job API's job routes: `GET /jobs/:job_id` (optionally waiting) and `POST /jobs/:job_id/cancel`. */
import type { Handler } from "hono";
import { jobView } from "../core/job_view.ts";
import { ApiError, invalidRequest } from "./errors.ts";
import type { GatewayEnv } from "./http_context.ts";
import { ownJob, waitForJobEnd } from "./job_wait.ts";
import type { RouteDeps } from "./route_deps.ts";

/** `GET /jobs/:job_id?wait=N`: the caller's job, after waiting up to N seconds for it to end. */
export function getJob({ services }: RouteDeps): Handler<GatewayEnv> {
  const { store, config } = services;
  return async function handleGetJob(c) {
    const jobId = jobIdParam(c.req.param("job_id"));
    const waitSeconds = parseWait(c.req.query("wait"), config.syncTimeoutMs / 1000);
    let job = await ownJob(store, jobId, c.get("owner"));
    if (!job) throw jobNotFound(jobId);
    if (waitSeconds > 0) {
      job = await waitForJobEnd(store, jobId, {
        timeoutMs: waitSeconds * 1000,
        signal: c.req.raw.signal,
      }) ?? job;
    }
    return c.json(jobView(job));
  };
}

/** `POST /jobs/:job_id/cancel`: cancels the caller's job while it is queued; 409 after that. */
export function cancelJob({ services, logger }: RouteDeps): Handler<GatewayEnv> {
  const { store } = services;
  return async function handleCancelJob(c) {
    const jobId = jobIdParam(c.req.param("job_id"));
    const job = await ownJob(store, jobId, c.get("owner"));
    if (!job) throw jobNotFound(jobId);
    const canceled = await store.cancelJob(jobId);
    if (!canceled) {
      const now = await store.getJob(jobId) ?? job;
      throw new ApiError(
        409,
        `Cannot cancel job: it is ${now.status}; only a queued job can be canceled`,
        { code: "not_cancelable", param: "job_id" },
      );
    }
    logger.info("Job canceled", { request_id: c.get("requestId"), job_id: jobId });
    return c.json(jobView(canceled));
  };
}

/** A job id as `newJob` makes them (a UUID); the store holds other items that no route may read. */
const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Whether a string is a job id as `newJob` makes them; no other item of the store is. */
export function isJobId(value: string | undefined): value is string {
  return value !== undefined && JOB_ID.test(value);
}

/** The route's job id; anything else is no job (and is not echoed back). */
function jobIdParam(value: string | undefined): string {
  if (isJobId(value)) return value;
  throw new ApiError(404, "Job not found: that is not a job id as POST /chat returns them", {
    param: "job_id",
  });
}

function jobNotFound(jobId: string): ApiError {
  return new ApiError(404, `Job not found: "${jobId}"`, { param: "job_id" });
}

/** `?wait=N`: whole seconds from 0 up to the sync timeout. */
function parseWait(value: string | undefined, maxSeconds: number): number {
  if (value === undefined || value === "") return 0;
  const seconds = Number(value);
  if (!Number.isInteger(seconds) || seconds < 0 || seconds > maxSeconds) {
    throw invalidRequest([{
      param: "wait",
      message: `must be a whole number of seconds from 0 to ${maxSeconds}`,
    }]);
  }
  return seconds;
}
