/** The bench's own settings, read from the environment (a dev tool: not the app's config). */

import type { BenchSqs } from "./emulators.ts";

/** Which storage the bench runs the gateway on. */
export type BenchBackend = "aws" | "embedded";

/** The parts of the bench, in the order they run. */
export const SECTIONS = [
  "latency",
  "wait",
  "stream",
  "lambda",
  "throughput",
  "memory",
  "backlog",
  "fairness",
] as const;

/** One part of the bench. */
export type BenchSection = typeof SECTIONS[number];

/** What one bench run does. */
export interface BenchOptions {
  /** The parts to run (BENCH_SECTIONS, comma-separated; all by default). */
  sections: readonly BenchSection[];
  /** Sequential requests per path when timing the queued path (BENCH_LATENCY_REQUESTS). */
  latencyRequests: number;
  /** Completions timed on the AWS backend (BENCH_WAIT_REQUESTS). */
  waitRequests: number;
  /** Streamed replies timed per backend (BENCH_STREAMS). */
  streams: number;
  /** Fresh Node.js processes per bundle for the cold start (BENCH_COLD_RUNS). */
  coldRuns: number;
  /** The throughput run's backend. */
  backend: BenchBackend;
  /** Jobs sent through the front door (N). */
  jobs: number;
  /** The stand-in backend's fixed answer delay. */
  latencyMs: number;
  /** VLLM_CONCURRENCY: jobs the worker runs against the backend at once. */
  concurrency: number;
  /** Jobs are spread over this many conversations, round robin; one job per conversation by default. */
  conversations: number;
  /** POST /chat requests in flight at once while submitting. */
  submitters: number;
  /** The memory run: the worker's places (BENCH_MEMORY_CONCURRENCY). */
  memoryConcurrency: number;
  /** The memory run: jobs queued behind the first full round (BENCH_MEMORY_QUEUED). */
  memoryQueued: number;
  /** The memory run: the backend's latency (BENCH_MEMORY_LATENCY_MS). */
  memoryLatencyMs: number;
  /** The backlog run: conversations (BENCH_BACKLOG_CONVERSATIONS), each with this many messages (BENCH_BACKLOG_MESSAGES). */
  backlogConversations: number;
  backlogMessages: number;
  /**
   * The fair-share run: key A's flood (BENCH_FAIR_FLOOD), key B's jobs one
   * after another (BENCH_FAIR_QUIET), the backend's places
   * (BENCH_FAIR_CONCURRENCY) and its latency (BENCH_FAIR_LATENCY_MS).
   */
  fairFlood: number;
  fairQuiet: number;
  fairConcurrency: number;
  fairLatencyMs: number;
  /** The SQS of the AWS runs (BENCH_SQS): the fast stand-in, or Moto. */
  sqs: BenchSqs;
  /** A Moto already running on 127.0.0.1 to use instead of starting one (e.g. behind a counting proxy). */
  awsEndpointUrl?: string;
}

/** Reads the bench options, reporting every bad variable at once. */
export function readBenchOptions(env: Readonly<Record<string, string | undefined>>): BenchOptions {
  const problems: string[] = [];
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const raw = env[name]?.trim();
    if (!raw) return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min || value > max) {
      problems.push(`${name} must be a whole number from ${min} to ${max}, got "${raw}"`);
      return fallback;
    }
    return value;
  };
  const backend = readBackend(env, problems);
  const jobs = int("BENCH_JOBS", 320, 1, 1_000_000);
  const options: BenchOptions = {
    sections: readSections(env, problems),
    latencyRequests: int("BENCH_LATENCY_REQUESTS", 300, 1, 100_000),
    waitRequests: int("BENCH_WAIT_REQUESTS", 200, 1, 100_000),
    streams: int("BENCH_STREAMS", 5, 1, 1000),
    coldRuns: int("BENCH_COLD_RUNS", 9, 1, 1000),
    backend,
    jobs,
    latencyMs: int("BENCH_LATENCY_MS", 300, 0, 600_000),
    concurrency: int("VLLM_CONCURRENCY", 16, 1, 1024),
    conversations: Math.min(jobs, int("BENCH_CONVERSATIONS", jobs, 1, 1_000_000)),
    submitters: int("BENCH_SUBMITTERS", 16, 1, 1024),
    memoryConcurrency: int("BENCH_MEMORY_CONCURRENCY", 64, 1, 1024),
    memoryQueued: int("BENCH_MEMORY_QUEUED", 300, 0, 100_000),
    memoryLatencyMs: int("BENCH_MEMORY_LATENCY_MS", 5000, 100, 600_000),
    backlogConversations: int("BENCH_BACKLOG_CONVERSATIONS", 40, 1, 10_000),
    backlogMessages: int("BENCH_BACKLOG_MESSAGES", 10, 1, 1000),
    fairFlood: int("BENCH_FAIR_FLOOD", 200, 1, 100_000),
    fairQuiet: int("BENCH_FAIR_QUIET", 10, 1, 10_000),
    fairConcurrency: int("BENCH_FAIR_CONCURRENCY", 2, 1, 1024),
    fairLatencyMs: int("BENCH_FAIR_LATENCY_MS", 200, 1, 600_000),
    sqs: readChoice(env, "BENCH_SQS", ["fast", "moto"], problems),
    awsEndpointUrl: readLoopbackUrl(env, "BENCH_AWS_ENDPOINT_URL", problems),
  };
  if (problems.length > 0) {
    throw new RangeError(`Cannot start bench: ${problems.join("; ")}`);
  }
  return options;
}

function readSections(
  env: Readonly<Record<string, string | undefined>>,
  problems: string[],
): BenchSection[] {
  const raw = env.BENCH_SECTIONS?.trim();
  if (!raw) return [...SECTIONS];
  const names = raw.split(",").map((name) => name.trim()).filter(Boolean);
  const unknown = names.filter((name) => !(SECTIONS as readonly string[]).includes(name));
  if (unknown.length > 0) {
    problems.push(`BENCH_SECTIONS may list ${SECTIONS.join(", ")}, got "${unknown.join(", ")}"`);
  }
  return SECTIONS.filter((section) => names.includes(section));
}

/** BENCH_BACKEND wins; `BACKEND=embedded` also works, as the issue puts it; aws otherwise. */
function readBackend(
  env: Readonly<Record<string, string | undefined>>,
  problems: string[],
): BenchBackend {
  const name = env.BENCH_BACKEND?.trim() ? "BENCH_BACKEND" : "BACKEND";
  const raw = env[name]?.trim();
  if (!raw) return "aws";
  if (raw === "aws" || raw === "embedded") return raw;
  problems.push(`${name} must be "aws" or "embedded", got "${raw}"`);
  return "aws";
}

/** One of `choices`, the first by default. */
function readChoice<T extends string>(
  env: Readonly<Record<string, string | undefined>>,
  name: string,
  choices: readonly T[],
  problems: string[],
): T {
  const raw = env[name]?.trim();
  if (!raw) return choices[0];
  if ((choices as readonly string[]).includes(raw)) return raw as T;
  problems.push(`${name} must be ${choices.map((c) => `"${c}"`).join(" or ")}, got "${raw}"`);
  return choices[0];
}

/** Only loopback: the bench sends no traffic anywhere else. */
function readLoopbackUrl(
  env: Readonly<Record<string, string | undefined>>,
  name: string,
  problems: string[],
): string | undefined {
  const raw = env[name]?.trim();
  if (!raw) return undefined;
  try {
    const url = new URL(raw);
    if (url.protocol === "http:" && url.hostname === "127.0.0.1") return raw.replace(/\/+$/, "");
  } catch {
    // reported below
  }
  problems.push(`${name} must be an http://127.0.0.1:<port> URL, got "${raw}"`);
  return undefined;
}
