/**
 * The Lambda bundle against its floor (scripts/bench/lambda_floor.ts: Hono,
 * its Lambda adapter, and the DynamoDB document client, SQS and S3 clients
 * the front door uses, and nothing else): the size of each (all its files,
 * chunks included), and each one's cold start, the import plus the first
 * `POST /chat` in a fresh Node.js process, against the emulators.
 */
import { fileURLToPath } from "node:url";
import { backendsFromConfig } from "../../lib/core/backends.ts";
import { loadConfig } from "../../lib/core/config.ts";
import { queueNameFor } from "../../lib/core/queue.ts";
import { silentLogger } from "../../lib/core/log.ts";
import { createAwsClients } from "../../lib/storage/aws/clients.ts";
import { provisionAws } from "../../lib/storage/aws/provision.ts";
import { resolveQueueUrl } from "../../lib/storage/aws/sqs_queue.ts";
import { type AwsEmulators, uniqueAwsEnv } from "../../tests/support/aws_emulators.ts";
import { httpApiEvent } from "../../tests/support/lambda_events.ts";
import { buildLambdaBundle } from "../build_lambda.ts";
import { median, round } from "./stats.ts";

const INVOKE = fileURLToPath(new URL("./lambda_invoke.mjs", import.meta.url));

/** One bundle's figures. */
export interface BundleFigures {
  bytes: number;
  /** Import plus first invocation, per fresh process (ms). */
  cold_ms: number[];
  import_ms: number[];
  rss_mb: number[];
}

/** What was measured, or why it was skipped. */
export type LambdaColdResult =
  | { gateway: BundleFigures; floor: BundleFigures; runs: number }
  | { skipped: string };

/** Builds both bundles and starts each `runs` times, alternating, each in a new `node`. */
export async function measureLambdaCold(
  runs: number,
  emulators: AwsEmulators,
): Promise<LambdaColdResult> {
  const missing = await nodeMissing();
  if (missing) return { skipped: missing };
  const dir = await Deno.makeTempDir({ prefix: "gateway-bench-lambda-" });
  try {
    const env = await lambdaEnv(emulators);
    // Each in a directory of its own, with its chunks.
    const bundles = {
      gateway: `${dir}/gateway/lambda.mjs`,
      floor: `${dir}/floor/floor.mjs`,
    };
    const figures = {
      gateway: empty(await buildLambdaBundle(bundles.gateway)),
      floor: empty(await buildLambdaBundle(bundles.floor, "scripts/bench/lambda_floor.ts")),
    };
    for (let i = 0; i < runs; i++) {
      for (
        const which of i % 2 === 0 ? ["floor", "gateway"] as const : ["gateway", "floor"] as const
      ) {
        const run = await coldStart(bundles[which], env, `cold-${which}-${i}`);
        figures[which].cold_ms.push(round(run.import_ms + run.first_ms));
        figures[which].import_ms.push(round(run.import_ms));
        figures[which].rss_mb.push(round(run.rss_mb));
      }
    }
    return { ...figures, runs };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The median cold start of a bundle. */
export function medianCold(figures: BundleFigures): number {
  return median(figures.cold_ms);
}

function empty(bytes: number): BundleFigures {
  return { bytes, cold_ms: [], import_ms: [], rss_mb: [] };
}

/** Fresh tables and queues, given to both handlers by URL as the SAM template gives them. */
async function lambdaEnv(emulators: AwsEmulators): Promise<Record<string, string>> {
  const aws = uniqueAwsEnv(emulators, "Cold");
  const config = loadConfig(aws);
  await provisionAws(config, silentLogger);
  const clients = createAwsClients(config);
  try {
    // The template gives each lane's URL without its backend: each backend's queue adds `-<backend>`.
    const backend = backendsFromConfig(config)[0].name;
    const urlOf = (base: string) => resolveQueueUrl(clients.sqs, queueNameFor(base, backend));
    const [jobs, priority] = [await urlOf(config.jobsQueue), await urlOf(config.priorityQueue)];
    return {
      ...aws,
      JOBS_QUEUE: jobs.slice(0, -`-${backend}`.length),
      PRIORITY_QUEUE: priority.slice(0, -`-${backend}`.length),
      // The floor sends to one queue, the one `POST /chat` sends to.
      FLOOR_QUEUE_URL: jobs,
      WORKER_STALE_S: "0",
      // As the template sets it for a public API without keys: the API's own name is no local one.
      ALLOWED_HOSTS: "*",
    };
  } finally {
    clients.destroy();
  }
}

async function coldStart(
  bundle: string,
  awsEnv: Record<string, string>,
  conversationId: string,
): Promise<{ import_ms: number; first_ms: number; status: number; rss_mb: number }> {
  const env: Record<string, string> = { ...awsEnv, PATH: Deno.env.get("PATH") ?? "" };
  const home = Deno.env.get("HOME");
  if (home) env.HOME = home;
  const event = httpApiEvent("POST", "/chat", {
    body: { conversation_id: conversationId, user_message: "Hi" },
  });
  const { code, stdout, stderr } = await new Deno.Command("node", {
    args: [INVOKE, bundle, JSON.stringify(event)],
    env,
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const lines = new TextDecoder().decode(stdout).trim().split("\n");
  try {
    const run = JSON.parse(lines.at(-1) ?? "");
    if (code === 0 && run.status === 202) return run;
  } catch {
    // reported below
  }
  throw new Error(
    `Cannot cold-start ${bundle} under Node.js: exit ${code}: ${
      [...lines, new TextDecoder().decode(stderr).trim()].join("\n")
    }`,
  );
}

async function nodeMissing(): Promise<string | undefined> {
  try {
    const { success } = await new Deno.Command("node", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).output();
    return success ? undefined : "`node --version` failed";
  } catch (err) {
    return `node is not on PATH (${(err as Error).message})`;
  }
}
