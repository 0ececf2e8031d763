/**
 * `deno task redrive`: moves every dead letter back to its queue, after
 * recording the request, so the worker retries each job as its message comes
 * back (by the rule of lib/core/retry.ts). On AWS an SQS message move task
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
    for (const [lane, result] of Object.entries(report.lanes)) {
      logger.info(
        result.method === "move_task"
          ? "SQS move task started; it goes on by itself"
          : "Dead letters moved back",
        { lane, ...result },
      );
      if (result.left) {
        logger.warn("Some dead letters are still there: run `deno task redrive` again", {
          lane,
          left: result.left,
        });
      }
    }
    logger.info("Redrive done: the worker retries each job whose conversation allows it", {
      requested_at: report.requested_at,
    });
  } catch (err) {
    logger.error("Redrive failed", { error: errorMessage(err) });
    Deno.exitCode = 1;
  } finally {
    services.close();
  }
}
