/**
 * The fair-share figure (issue 24): key A queues a flood of jobs, then key B
 * sends its own, one after another as a person chatting or an agent's loop
 * does, each once the one before has its reply. B's jobs should wait about
 * one job's run, not behind A's backlog, while A's backlog drains.
 *
 * A job's run is the time it holds a model place: the backend's own time,
 * the median of the stand-in's calls. B's wait is the rest of its time from
 * being queued to its reply: the queue, the claim, the wait for a place, the
 * store. It also reports how much of A's flood was still waiting when B's
 * last job started, and what B's first job would have waited first come,
 * first served: A's jobs still ahead of it, over the places, times a run.
 */
import { createApp } from "../../lib/http/app.ts";
import { type Env, loadConfig } from "../../lib/core/config.ts";
import type { Job } from "../../lib/core/jobs.ts";
import { createLogger } from "../../lib/core/log.ts";
import { sleep } from "../../lib/core/sleep.ts";
import { provisionAws } from "../../lib/storage/aws/provision.ts";
import { openServices } from "../../lib/storage/open.ts";
import { JobWorker } from "../../lib/worker/job_worker.ts";
import { uniqueAwsEnv } from "../../tests/support/aws_emulators.ts";
import type { BenchEmulators } from "./emulators.ts";
import { startLlmProcess } from "./llm_process.ts";
import { percentile, round } from "./stats.ts";

/** What one fair-share run measured. */
export interface FairnessResult {
  backend: "embedded" | "aws";
  flood: number;
  quiet: number;
  concurrency: number;
  /** One job's run: the backend's own time for a call, the median over every call (ms). */
  run_ms: number;
  /** B's jobs' waits: from being queued to the reply, less one run (ms). */
  quiet_wait_p50_ms: number;
  quiet_wait_first_ms: number;
  quiet_wait_max_ms: number;
  /** B's median wait over one job's run. */
  quiet_wait_runs: number;
  /** A's jobs not yet started when B's last job started: its backlog still draining. */
  flood_waiting_at_end: number;
  /** What B's first job would have waited first come, first served (ms). */
  fifo_wait_ms: number;
}

/** Settings of a fair-share run. */
export interface FairnessOptions {
  flood: number;
  quiet: number;
  concurrency: number;
  latencyMs: number;
}

const A = "bench-flooding-key";
const B = "bench-quiet-key";
/** The longest the run may take before it gives up. */
const DEADLINE_MS = 10 * 60_000;

/** Runs the flood and the quiet key on one backend; `emulators` for AWS. */
export async function measureFairness(
  backend: "embedded" | "aws",
  options: FairnessOptions,
  emulators?: BenchEmulators,
): Promise<FairnessResult> {
  const llm = await startLlmProcess(options.latencyMs);
  const dataDir = backend === "embedded"
    ? await Deno.makeTempDir({ prefix: "gateway-fairness-" })
    : undefined;
  const storage: Env = dataDir
    ? { BACKEND: "embedded", DATA_DIR: dataDir }
    : uniqueAwsEnv(emulators!, "Fairness");
  const config = loadConfig({
    ...storage,
    GATEWAY_API_KEYS: `a:${A},b:${B}`,
    VLLM_BASE_URL: llm.baseUrl,
    VLLM_MODEL: "bench-text-model",
    VLLM_CONCURRENCY: String(options.concurrency),
    OLLAMA_BASE_URL: llm.baseUrl,
    POLL_WAIT_S: "1",
    WORKER_STALE_S: "0",
  });
  const logger = createLogger({ level: "warn", write: (line) => console.error(line) });
  if (config.backend === "aws") await provisionAws(config, logger);
  const services = await openServices(config);
  const app = createApp(services, { logger });
  const worker = new JobWorker(services, { logger });
  const deadline = Date.now() + DEADLINE_MS;
  const send = async (key: string, text: string) => {
    const res = await app.request("/chat", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
      body: JSON.stringify({ conversation_id: crypto.randomUUID(), user_message: text }),
    });
    if (res.status !== 202) throw new Error(`POST /chat answered ${res.status}`);
    return (await res.json()).job_id as string;
  };
  const finished = async (id: string): Promise<Job> => {
    while (true) {
      const job = await services.store.getJob(id);
      if (job?.status === "succeeded" || job?.status === "failed") return job;
      if (Date.now() > deadline) throw new Error(`Job ${id} did not finish in time`);
      await sleep(10);
    }
  };
  try {
    await worker.start();
    const flood: string[] = [];
    for (let i = 0; i < options.flood; i++) flood.push(await send(A, `flood ${i}`));
    const quiet: Job[] = [];
    for (let i = 0; i < options.quiet; i++) quiet.push(await finished(await send(B, `quiet ${i}`)));
    const lastStart = Date.parse(quiet.at(-1)!.started_at!);
    const floodJobs = await Promise.all(flood.map(finished));
    const waiting = floodJobs.filter((j) => Date.parse(j.started_at!) > lastStart).length;
    const runMs = percentile((await llm.spans()).map((s) => s.end - s.start), 50);
    const waits = quiet.map((j) =>
      Math.max(0, Math.round(Date.parse(j.finished_at!) - Date.parse(j.created_at) - runMs))
    );
    const firstQueued = Date.parse(quiet[0].created_at);
    const ahead = floodJobs.filter((j) => Date.parse(j.started_at!) > firstQueued).length;
    return {
      backend,
      flood: options.flood,
      quiet: options.quiet,
      concurrency: options.concurrency,
      run_ms: round(runMs, 1),
      quiet_wait_p50_ms: round(percentile(waits, 50), 1),
      quiet_wait_first_ms: waits[0],
      quiet_wait_max_ms: Math.max(...waits),
      quiet_wait_runs: round(percentile(waits, 50) / runMs, 2),
      flood_waiting_at_end: waiting,
      fifo_wait_ms: Math.round((ahead / options.concurrency) * runMs),
    };
  } finally {
    await worker.stop();
    services.close();
    await llm.stop();
    if (dataDir) await Deno.remove(dataDir, { recursive: true });
  }
}
