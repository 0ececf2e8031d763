/**
 * The worker's memory on the AWS backend, as issue 13 measured it: the real
 * `worker.ts` in a process of its own (as `deno task worker` runs it), with
 * `concurrency` places at a backend that answers after `latencyMs`, and
 * `concurrency + queued` jobs sent at once. Its resident set size is read from
 * /proc while idle, when its places first all run, and while they stay full
 * with jobs still queued; with it, where the resident memory is: allocated by
 * the process (V8's heap, buffers, the runtime's own), or mapped files (the
 * deno binary's code, which the kernel can drop and share).
 */
import { loadConfig } from "../../lib/core/config.ts";
import { createLogger } from "../../lib/core/log.ts";
import { createApp } from "../../lib/http/app.ts";
import { openAwsServices } from "../../lib/storage/aws/open.ts";
import { provisionAws } from "../../lib/storage/aws/provision.ts";
import { type AwsEmulators, uniqueAwsEnv } from "../../tests/support/aws_emulators.ts";
import { startFixedLatencyLlm } from "./fixed_latency_llm.ts";
import { lines } from "./lines.ts";
import { type RssParts, rssParts } from "./processes.ts";
import { round } from "./stats.ts";
import { workerEnv, workerTaskSettings } from "./worker_task.ts";

/** The worker's resident memory in each phase, in MiB. */
export interface MemoryResult {
  concurrency: number;
  queued: number;
  latency_ms: number;
  /** Before any job, after start-up. */
  idle_mib: number;
  /** The most while the first `concurrency` jobs ran at once. */
  first_full_mib: number;
  /** The most while every place stayed busy afterwards, jobs still queued. */
  steady_mib: number;
  /** After every job had finished. */
  after_mib: number;
  /** At the steady peak: memory the process allocated (V8's heap, buffers, the runtime's own). */
  steady_anon_mib: number;
  /** At the steady peak: mapped files, mostly the deno binary's code. */
  steady_file_mib: number;
  /** Idle, the same two. */
  idle_anon_mib: number;
  idle_file_mib: number;
  samples: number;
}

/** Options for {@linkcode measureWorkerMemory}. */
export interface MemoryOptions {
  concurrency: number;
  queued: number;
  latencyMs: number;
}

/** How often the worker's memory is read. */
const SAMPLE_EVERY_MS = 200;

/** Runs the worker under load and reads its memory as it goes. */
export async function measureWorkerMemory(
  emulators: AwsEmulators,
  options: MemoryOptions,
): Promise<MemoryResult> {
  const { concurrency, queued, latencyMs } = options;
  const llm = startFixedLatencyLlm(latencyMs);
  const env = {
    ...uniqueAwsEnv(emulators, "Bench"),
    LLM_BACKENDS: "vllm",
    VLLM_BASE_URL: llm.baseUrl,
    VLLM_MODEL: "bench-text-model",
    VLLM_CONCURRENCY: String(concurrency),
    LLM_TIMEOUT_S: String(Math.max(60, Math.ceil((latencyMs * 3) / 1000))),
    POLL_WAIT_S: "1",
    WORKER_STALE_S: "0",
  };
  const config = loadConfig(env);
  const logger = createLogger({ level: "warn", write: (line) => console.error(line) });
  await provisionAws(config, logger);
  const services = openAwsServices(config);
  const worker = spawnWorker(env);
  try {
    const app = createApp(services, { logger });
    await worker.succeeded(0); // polling
    const idle = await sampleFor(worker.pid, 2000);

    let next = 0;
    const total = concurrency + queued;
    const submitter = async () => {
      for (let i = next++; i < total; i = next++) {
        const res = await app.request("/chat", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ conversation_id: `memory-${i}`, user_message: `Memory ${i}` }),
        });
        if (res.status !== 202) {
          throw new Error(`Cannot submit memory job ${i}: ${res.status} ${await res.text()}`);
        }
        await res.body?.cancel();
      }
    };
    await Promise.all(Array.from({ length: 16 }, submitter));
    const firstFull: RssParts[] = [];
    const steady: RssParts[] = [];
    const deadline = Date.now() + (latencyMs * (total / concurrency + 4)) + 60_000;
    while (llm.answered < total && Date.now() < deadline) {
      const parts = await rssParts(worker.pid);
      if (parts !== undefined && llm.inFlight >= concurrency) {
        (llm.answered < concurrency ? firstFull : steady).push(parts);
      }
      await new Promise((r) => setTimeout(r, SAMPLE_EVERY_MS));
    }
    // A job that failed would leave the count short for good: wait a minute at most.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      worker.succeeded(total),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`Cannot measure memory: ${llm.answered} of ${total} jobs ran`)),
          60_000,
        );
      }),
    ]).finally(() => clearTimeout(timer));

    const after = await sampleFor(worker.pid, 1000);
    const none: RssParts = { rss: NaN, anon: NaN, file: NaN };
    const peak = (samples: RssParts[]) =>
      samples.reduce((a, b) => Number.isNaN(a.rss) || b.rss > a.rss ? b : a, none);
    return {
      concurrency,
      queued,
      latency_ms: latencyMs,
      idle_mib: round(peak(idle).rss),
      first_full_mib: round(peak(firstFull).rss),
      steady_mib: round(peak(steady).rss),
      after_mib: round(peak(after).rss),
      steady_anon_mib: round(peak(steady).anon),
      steady_file_mib: round(peak(steady).file),
      idle_anon_mib: round(peak(idle).anon),
      idle_file_mib: round(peak(idle).file),
      samples: idle.length + firstFull.length + steady.length + after.length,
    };
  } finally {
    await worker.stop();
    services.close();
    await llm.stop();
  }
}

async function sampleFor(pid: number, ms: number): Promise<RssParts[]> {
  const samples: RssParts[] = [];
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const parts = await rssParts(pid);
    if (parts !== undefined) samples.push(parts);
    await new Promise((r) => setTimeout(r, SAMPLE_EVERY_MS));
  }
  return samples;
}

/** The real worker, started as `deno task worker` starts it; its log tells how many jobs succeeded. */
function spawnWorker(env: Record<string, string>) {
  const task = workerTaskSettings();
  const child = new Deno.Command("deno", {
    args: [
      "run",
      "--allow-net",
      "--allow-env",
      "--allow-read",
      "--allow-write",
      "--allow-sys",
      ...(task.v8Flags ? [task.v8Flags] : []),
      new URL("../../worker.ts", import.meta.url).pathname,
    ],
    clearEnv: true,
    env: workerEnv(task, env),
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  let polling = false;
  let succeeded = 0;
  const listeners = new Set<() => void>();
  const reading = (async () => {
    for await (const line of lines(child.stdout)) {
      let entry: { level?: string; message?: string };
      try {
        entry = JSON.parse(line);
      } catch {
        console.error(line); // not a log line: show it, and go on counting
        continue;
      }
      if (entry.message === "Worker polling") polling = true;
      else if (entry.message === "Job succeeded") succeeded++;
      else if (entry.level === "warn" || entry.level === "error") console.error(line);
      listeners.forEach((listener) => listener());
    }
  })();
  const ended = reading.then(
    () => new Error("Bench worker exited early"),
    (err) => new Error(`Cannot read the bench worker's log: ${err}`),
  );
  return {
    pid: child.pid,
    /** Resolves once the worker polls and `count` jobs have succeeded; rejects if it ends first. */
    succeeded(count: number): Promise<void> {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (polling && succeeded >= count) {
            listeners.delete(check);
            resolve();
          }
        };
        listeners.add(check);
        ended.then(reject);
        check();
      });
    },
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
      await child.status;
      await reading.catch(() => {});
    },
  };
}
