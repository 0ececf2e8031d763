/**
 * The bench's worker in a process of its own, as it runs on the user's
 * machine: the real JobWorker, configured from the environment and started
 * with the V8 flags and variables of `deno task worker`, on AWS clients that
 * count their calls. So the front
 * door's load in the bench's process does not slow it down, and the other way
 * round.
 *
 * It tells the bench on its standard output, one JSON object a line:
 * `{"ready":true}` once polling, each job event as a {@linkcode WatchEvent},
 * and `{"calls":{...}}` after each line `calls` on its standard input. Closing
 * its standard input stops it.
 */
import { loadConfig } from "../../lib/core/config.ts";
import { createLogger } from "../../lib/core/log.ts";
import { openAwsServices } from "../../lib/storage/aws/open.ts";
import { JobWorker } from "../../lib/worker/job_worker.ts";
import { type CallCounts, countingClients } from "./aws_calls.ts";
import { JobTracker, type WatchEvent, watchJobs } from "./job_watch.ts";
import { lines } from "./lines.ts";
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
  const child = new Deno.Command("deno", {
    args: [
      "run",
      ...(task.v8Flags ? [task.v8Flags] : []),
      "--allow-net=127.0.0.1",
      "--allow-env",
      "--allow-read",
      "--allow-sys=osRelease",
      new URL(import.meta.url).pathname,
    ],
    clearEnv: true,
    env: workerEnv(task, env),
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const progress = new JobTracker();
  const ready = Promise.withResolvers<void>();
  const callAnswers: ((calls: CallCounts) => void)[] = [];
  const reading = (async () => {
    for await (const line of lines(child.stdout)) {
      const message = JSON.parse(line);
      if (message.ready) ready.resolve();
      else if (message.calls) callAnswers.shift()?.(new Map(Object.entries(message.calls)));
      else progress.record(message as WatchEvent);
    }
    ready.reject(new Error("Cannot start the bench's worker: it exited before polling"));
  })();
  const writer = child.stdin.getWriter();
  const stop = async () => {
    await writer.close().catch(() => {});
    await child.status;
    await reading;
  };
  try {
    await ready.promise;
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    progress,
    pid: child.pid,
    async calls() {
      const answer = new Promise<CallCounts>((resolve) => callAnswers.push(resolve));
      await writer.write(new TextEncoder().encode("calls\n"));
      return await answer;
    },
    stop,
  };
}

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger({
    level: "warn",
    write: (line) => console.error(line),
  });
  const say = (message: unknown) => console.log(JSON.stringify(message));
  const { clients, calls } = countingClients(config);
  const services = openAwsServices(config, clients);
  const watch = watchJobs(services.store, say);
  const worker = new JobWorker({ ...services, store: watch.store }, { logger });
  await worker.start();
  say({ ready: true });
  for await (const line of lines(Deno.stdin.readable)) {
    if (line.trim() === "calls") say({ calls: Object.fromEntries(calls) });
  }
  await worker.stop();
  services.close();
}

if (import.meta.main) await main();
