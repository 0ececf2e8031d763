/** LLM backends as data, and the rule that picks one for a message. */
import type { Config } from "./config.ts";

/** One OpenAI-compatible LLM server the worker can call. */
export interface Backend {
  /** The route name clients see, e.g. "vllm". */
  readonly name: string;
  readonly baseUrl: string;
  readonly model: string;
  /** Whether the model accepts image parts. */
  readonly images: boolean;
  /** How many jobs the worker runs against it at once. */
  readonly concurrency: number;
  /** The environment variable that sets `baseUrl`, named in errors. */
  readonly baseUrlVariable: string;
}

/** The configured backends, text first. */
export function backendsFromConfig(config: Config): readonly Backend[] {
  return Object.freeze([
    {
      name: "vllm",
      baseUrl: config.vllm.baseUrl,
      model: config.vllm.model,
      concurrency: config.vllm.concurrency,
      images: false,
      baseUrlVariable: "VLLM_BASE_URL",
    },
    {
      name: "ollama",
      baseUrl: config.ollama.baseUrl,
      model: config.ollama.model,
      concurrency: config.ollama.concurrency,
      images: true,
      baseUrlVariable: "OLLAMA_BASE_URL",
    },
  ]);
}

/** Picks the backend for a message: the first that accepts images when it has any, else the first. */
export function chooseBackend(backends: readonly Backend[], needsImages: boolean): Backend {
  const backend = needsImages ? backends.find((b) => b.images) : backends[0];
  if (!backend) {
    throw new RangeError(
      `Cannot route message: no backend ${needsImages ? "accepts images" : "is configured"}`,
    );
  }
  return backend;
}

/** Finds a backend by its route name. */
export function backendNamed(backends: readonly Backend[], name: string): Backend | undefined {
  return backends.find((b) => b.name === name);
}
