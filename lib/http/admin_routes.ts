/**
 * `POST /admin/dead-letters/retry`, for admin keys only: sends one failed job
 * back to run (`{"job_id": "…"}`), or redrives the dead letters of every
 * backend's queues (`{"all": true}`). The rules are in lib/core/retry.ts.
 */
import type { Handler } from "hono";
import { redriveDeadLetters, retryFailedJob } from "../core/retry.ts";
import { ApiError, invalidRequest } from "./errors.ts";
import type { GatewayEnv } from "./http_context.ts";
import { isJobId } from "./job_routes.ts";
import type { RouteDeps } from "./route_deps.ts";
import { storageFailure } from "./storage_errors.ts";
import { readJson } from "./validation.ts";

/** What the body asks for. */
type RetryRequest = { jobId: string } | { all: true };

/** `POST /admin/dead-letters/retry`. */
export function retryDeadLetters({ services, logger }: RouteDeps): Handler<GatewayEnv> {
  return async function handleRetryDeadLetters(c) {
    const request = parseRetryRequest(await readJson(c.req.raw));
    const requestId = c.get("requestId");
    if ("all" in request) {
      const report = await redriveDeadLetters(services).catch((err) => {
        throw storageFailure(err, {
          action: "Cannot redrive the dead letters",
          what: "the store or the queue",
        });
      });
      if (report.failed > 0) {
        // The queues' own errors are in the log only: they name accounts and roles.
        logger.error("Dead letters redriven in part", { request_id: requestId, ...report });
        // The others were moved; asking again moves whatever is left, so nothing is lost.
        const failed = Object.entries(report.backends).flatMap(([backend, lanes]) =>
          Object.entries(lanes).flatMap(([lane, r]) => "error" in r ? [`${backend} ${lane}`] : [])
        );
        throw new ApiError(
          503,
          `Cannot redrive every dead-letter queue (${report.failed} failed: ${
            failed.join(", ")
          }; the others were; request id ${requestId}: the gateway's log says why)`,
          { code: "service_unavailable" },
        );
      }
      logger.info("Dead letters redriven", { request_id: requestId, ...report });
      return c.json({ redrive: report }, 202);
    }
    const result = await retryFailedJob(services, request.jobId).catch((err) => {
      throw storageFailure(err, {
        action: "Cannot enqueue job for a retry",
        what: "the queue",
        jobId: request.jobId,
      });
    });
    if (!result) {
      throw new ApiError(404, `Job not found: "${request.jobId}"`, { param: "job_id" });
    }
    if (result.state === "refused") {
      throw new ApiError(409, result.reason, { code: result.code, jobId: request.jobId });
    }
    logger.info("Job sent back to run", {
      request_id: requestId,
      job_id: request.jobId,
      retry: result.state,
    });
    // The job is most likely another key's: its ids and status, never its messages.
    return c.json({
      retry: result.state,
      ...(result.state === "waiting" ? { behind: result.behind } : {}),
      job: { job_id: result.job.job_id, status: result.job.status },
    });
  };
}

function parseRetryRequest(body: unknown): RetryRequest {
  const value = (body ?? {}) as Record<string, unknown>;
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw invalidRequest([{ param: "body", message: "must be a JSON object" }]);
  }
  const hasJob = value.job_id !== undefined;
  if (hasJob && value.all !== undefined) {
    throw invalidRequest([{
      param: "all",
      message: "cannot be given with job_id: ask for one or all",
    }]);
  }
  if (hasJob) {
    const jobId = typeof value.job_id === "string" ? value.job_id.trim() : undefined;
    if (!isJobId(jobId)) {
      throw invalidRequest([{
        param: "job_id",
        message: "must be a job id as POST /chat returns them",
      }]);
    }
    return { jobId };
  }
  if (value.all === true) return { all: true };
  throw invalidRequest([{
    param: value.all === undefined ? "job_id" : "all",
    message: value.all === undefined
      ? 'is required: give {"job_id": "…"} to retry one job, or {"all": true} to redrive every dead letter'
      : "must be true",
  }]);
}
