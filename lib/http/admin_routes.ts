/**
 * `POST /admin/dead-letters/retry`, for admin keys only: sends one failed job
 * back to run (`{"job_id": "…"}`), or redrives the dead letters of every
 * backend's queues (`{"all": true}`). The rules are in lib/core/retry.ts.
 */
import type { Handler } from "hono";
import { errorMessage } from "../core/error_message.ts";
import { jobView } from "../core/job_view.ts";
import { redriveDeadLetters, retryFailedJob } from "../core/retry.ts";
import { ApiError, invalidRequest } from "./errors.ts";
import type { GatewayEnv } from "./http_context.ts";
import { isJobId } from "./job_routes.ts";
import type { RouteDeps } from "./route_deps.ts";
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
        throw new ApiError(503, `Cannot redrive the dead letters: ${errorMessage(err)}`, {
          cause: err,
        });
      });
      if (report.failed > 0) {
        logger.error("Dead letters redriven in part", { request_id: requestId, ...report });
        // The others were moved; asking again moves whatever is left, so nothing is lost.
        const errors = Object.values(report.backends).flatMap((lanes) =>
          Object.values(lanes).flatMap((r) => "error" in r ? [r.error] : [])
        );
        throw new ApiError(
          503,
          `Cannot redrive every dead-letter queue (${report.failed} failed; the others were): ${
            errors.join("; ")
          }`,
        );
      }
      logger.info("Dead letters redriven", { request_id: requestId, ...report });
      return c.json({ redrive: report }, 202);
    }
    const result = await retryFailedJob(services, request.jobId).catch((err) => {
      throw new ApiError(503, `Cannot enqueue job for a retry: ${errorMessage(err)}`, {
        cause: err,
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
    return c.json({
      retry: result.state,
      ...(result.state === "waiting" ? { behind: result.behind } : {}),
      job: jobView(result.job),
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
