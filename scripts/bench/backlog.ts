/**
 * The backlog figure (issue 26): jobs wait with no worker for several
 * line-check intervals, as while the model machine sleeps; then one worker
 * drains them. It reports how many times each job's message was delivered
 * (line checks counted apart) and how the drain's time compares with the
 * ideal: every place busy from the first job to the last, within what the
 * conversations' one-at-a-time order allows.
 */
import { createApp } from "../../lib/http/app.ts";
import { type Env, loadConfig } from "../../lib/core/config.ts";
import { createLogger } from "../../lib/core/log.ts";
import { sleep } from "../../lib/core/sleep.ts";
import { provisionAws } from "../../lib/storage/aws/provision.ts";
import { openServices } from "../../lib/storage/open.ts";
import { JobWorker } from "../../lib/worker/job_worker.ts";
import { uniqueAwsEnv } from "../../tests/support/aws_emulators.ts";
import { ObservedQueue } from "../../tests/support/queue_wrappers.ts";
import type { BenchEmulators } from "./emulators.ts";
import { watchJobs } from "./job_watch.ts";
import { startLlmProcess } from "./llm_process.ts";
import { round } from "./stats.ts";

/** What one backlog run measured. */
export interface BacklogResult {
  backend: "embedded" | "aws";
  jobs: number;
  conversations: number;
  /** How long the jobs waited with no worker, in line-check intervals. */
  waited_intervals: number;
  /** Job messages delivered per job (1 is ideal). */
  deliveries_per_job: number;
  /** Line checks delivered while draining. */
  line_checks: number;
  drain_s: number;
  ideal_s: number;
  /** The ideal drain time over the measured one, in percent. */
  ratio_pct: number;
}

/** Settings of a backlog run. */
export interface BacklogOptions {
  conversations: number;
  messages: number;
  concurrency: number;
  latencyMs: number;
  /** LINE_CHECK_S for the run: short, so the wait outlasts several intervals. */
  lineCheckSeconds: number;
}

/** The longest the drain may take before the run gives up. */
const DEADLINE_MS = 10 * 60_000;

/** Runs the backlog on one backend; `emulators` for AWS. */
export async function measureBacklog(
  backend: "embedded" | "aws",
  options: BacklogOptions,
  emulators?: BenchEmulators,
): Promise<BacklogResult> {
  const llm = await startLlmProcess(options.latencyMs);
  const dataDir = backend === "embedded"
    ? await Deno.makeTempDir({ prefix: "gateway-backlog-" })
    : undefined;
  const storage: Env = dataDir
    ? { BACKEND: "embedded", DATA_DIR: dataDir }
    : uniqueAwsEnv(emulators!, "Backlog");
  const config = loadConfig({
    ...storage,
    VLLM_BASE_URL: llm.baseUrl,
    VLLM_MODEL: "bench-text-model",
    VLLM_CONCURRENCY: String(options.concurrency),
    OLLAMA_BASE_URL: llm.baseUrl,
    POLL_WAIT_S: "1",
    WORKER_STALE_S: "0",
    LINE_CHECK_S: String(options.lineCheckSeconds),
  });
  const logger = createLogger({ level: "warn", write: (line) => console.error(line) });
  if (config.backend === "aws") await provisionAws(config, logger);
  const services = await openServices(config);
  const app = createApp(services, { logger });
  const observed = new ObservedQueue(services.queue);
  const watch = watchJobs(services.store);
  const worker = new JobWorker({ ...services, queue: observed, store: watch.store }, { logger });
  let workerStarted = false;
  try {
    const jobIds = new Set<string>();
    let next = 0;
    // One message at a time per conversation, eight conversations at once.
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (next < options.conversations) {
        const conversation = `backlog-${next++}`;
        for (let n = 0; n < options.messages; n++) {
          const res = await app.request("/chat", {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ conversation_id: conversation, user_message: `message ${n}` }),
          });
          if (res.status !== 202) throw new Error(`POST /chat answered ${res.status}`);
          jobIds.add((await res.json()).job_id);
        }
      }
    }));
    const waitedIntervals = 4;
    await sleep(waitedIntervals * options.lineCheckSeconds * 1000);
    const started = performance.now();
    workerStarted = true;
    await worker.start();
    await watch.allDone(jobIds, DEADLINE_MS);
    const drainMs = performance.now() - started;
    const deliveries = observed.deliveries().length;
    const lineChecks = observed.receives.flatMap((r) => r.tickets ?? [])
      .filter((t) => t.line_check).length;
    const rounds = Math.max(Math.ceil(jobIds.size / options.concurrency), options.messages);
    const idealMs = rounds * options.latencyMs;
    return {
      backend,
      jobs: jobIds.size,
      conversations: options.conversations,
      waited_intervals: waitedIntervals,
      deliveries_per_job: round(deliveries / jobIds.size, 3),
      line_checks: lineChecks,
      drain_s: round(drainMs / 1000, 2),
      ideal_s: round(idealMs / 1000, 2),
      ratio_pct: round((100 * idealMs) / drainMs, 1),
    };
  } finally {
    if (workerStarted) await worker.stop();
    services.close();
    await llm.stop();
    if (dataDir) await Deno.remove(dataDir, { recursive: true });
  }
}
