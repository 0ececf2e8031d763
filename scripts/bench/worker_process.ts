/**
 * The bench's worker in a process of its own, as it runs on the user's
 * machine: the real JobWorker, configured from the environment and started
 * with the V8 flags and variables of `deno task worker`, on AWS clients that
 * count their calls. So the front
 * door's load in the bench's process does not slow it down, and the other way
 * round.
 *
 * It tells the bench (scripts/bench/json_child.ts) when it polls, each job
 * event as a {@linkcode WatchEvent}, and the AWS calls it has made so far when
 * asked `calls`.
 */
import { loadConfig } from "../../lib/core/config.ts";
import { createLogger } from "../../lib/core/log.ts";
import { openAwsServices } from "../../lib/storage/aws/open.ts";
import { JobWorker } from "../../lib/worker/job_worker.ts";
import { type CallCounts, countingClients } from "./aws_calls.ts";
import { JobTracker, type WatchEvent, watchJobs } from "./job_watch.ts";
import { answerBench, startJsonChild, tellBench } from "./json_child.ts";
import { workerEnv, workerTaskSettings } from "./worker_task.ts";

/** A worker running in a child process. */
export interface WorkerProcess {
  /** Its jobs' ends, as it reports them. */
  readonly progress: JobTracker;
  readonly pid: number;
  /** The AWS calls it has made so far, by command. */
  calls(): Promise<CallCounts>;
  /** Stops it as SIGTERM would, and waits for it to exit. */
  stop(): Promise<void>;
}

/** Starts the bench's worker with the gateway's variables `env`; resolves once it polls. */
export async function startWorkerProcess(env: Record<string, string>): Promise<WorkerProcess> {
  const task = workerTaskSettings();
  const progress = new JobTracker();
  const child = await startJsonChild<true>({
    what: "the bench's worker",
    args: [
      "run",
      ...(task.v8Flags ? [task.v8Flags] : []),
      "--allow-net=127.0.0.1",
      "--allow-env",
      "--allow-read",
      "--allow-sys=osRelease",
      new URL(import.meta.url).pathname,
    ],
    env: workerEnv(task, env),
    onNews: (event) => progress.record(event as WatchEvent),
  });
  return {
    progress,
    pid: child.pid,
    async calls() {
      return new Map(Object.entries(await child.ask("calls") as Record<string, number>));
    },
    stop: child.stop,
  };
}

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger({
    level: "warn",
    write: (line) => console.error(line),
  });
  const { clients, calls } = countingClients(config);
  const services = openAwsServices(config, clients);
  const watch = watchJobs(services.store, (event) => tellBench("news", event));
  const worker = new JobWorker({ ...services, store: watch.store }, { logger });
  await worker.start();
  tellBench("ready", true);
  await answerBench((command) => command === "calls" ? Object.fromEntries(calls) : null);
  await worker.stop();
  services.close();
}

if (import.meta.main) await main();
