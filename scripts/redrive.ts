/**
 * `deno task redrive`: moves the dead letters of every backend in
 * `LLM_BACKENDS` back to their queues, after recording the request, so the
 * worker retries each job as its message comes back (by the rule of
 * lib/core/retry.ts). On AWS an SQS message move task
 * does the moving and goes on after this exits; on Moto, which has no move
 * tasks, and on the embedded backend, the messages are moved here.
 */
import { describeConfig, loadConfig } from "../lib/core/config.ts";
import { errorMessage } from "../lib/core/error_message.ts";
import { createLogger } from "../lib/core/log.ts";
import { redriveDeadLetters } from "../lib/core/retry.ts";
import { openServices } from "../lib/storage/open.ts";

if (import.meta.main) {
  const config = loadConfig();
  const logger = createLogger();
  logger.info("Redriving the dead letters", describeConfig(config));
  const services = await openServices(config);
  try {
    const report = await redriveDeadLetters(services);
    for (const [backend, lanes] of Object.entries(report.backends)) {
      for (const [lane, result] of Object.entries(lanes)) {
        if ("error" in result) {
          logger.error("Dead letters not moved", { backend, lane, error: result.error });
          continue;
        }
        logger.info(
          result.method === "move_task"
            ? "SQS move task started; it goes on by itself"
            : "Dead letters moved back",
          { backend, lane, ...result },
        );
        if (result.left) {
          logger.warn("Some dead letters are still there: run `deno task redrive` again", {
            backend,
            lane,
            left: result.left,
          });
        }
      }
    }
    if (report.failed > 0) Deno.exitCode = 1;
    logger.info("Redrive done: the worker retries each job whose conversation allows it", {
      requested_at: report.requested_at,
      failed_queues: report.failed,
    });
  } catch (err) {
    logger.error("Redrive failed", { error: errorMessage(err) });
    Deno.exitCode = 1;
  } finally {
    services.close();
  }
}
