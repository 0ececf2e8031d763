/** LLM backends as data: each is a named entry of the configuration, and one generic call serves them all. */
import type { ModelInfo } from "./catalogue.ts";
import type { Config, LlmBackendConfig } from "./config.ts";

/** One OpenAI-compatible LLM server, as configured. */
export interface Backend extends LlmBackendConfig {
  /** The environment variable that sets `baseUrl`, named in errors. */
  readonly baseUrlVariable: string;
}

/** The configured backends, in order. */
export function backendsFromConfig(config: Config): readonly Backend[] {
  return Object.freeze(
    config.llmBackends.map((backend) =>
      Object.freeze({ ...backend, baseUrlVariable: `${backend.variablePrefix}BASE_URL` })
    ),
  );
}

/** Finds a backend by its route name. */
export function backendNamed(backends: readonly Backend[], name: string): Backend | undefined {
  return backends.find((b) => b.name === name);
}

/**
 * The models configuration alone knows of for a backend: its explicit list,
 * else its default model. Without a list, an Ollama backend's default model is
 * taken to see images, as the gateway assumed before workers could tell.
 */
export function configuredModels(backend: Backend): ModelInfo[] {
  if (backend.models.length > 0) {
    return backend.models.map((m) => ({ id: m.id, capabilities: [...m.capabilities] }));
  }
  if (!backend.model) return [];
  const capabilities = backend.kind === "ollama" ? ["completion", "vision"] : ["completion"];
  return [{ id: backend.model, capabilities }];
}
