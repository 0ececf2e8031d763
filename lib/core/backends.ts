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

/**
 * A model name as the backend resolves it: Ollama takes a name without a tag
 * as its `:latest` (`llava` is `llava:latest`); other servers take names as
 * they are. The tag follows a colon in the name's last path segment, so a
 * registry's port (`host:5000/llava`) is no tag.
 */
export function resolvedModelName(backend: Pick<Backend, "kind">, name: string): string {
  if (backend.kind !== "ollama") return name;
  return name.slice(name.lastIndexOf("/") + 1).includes(":") ? name : `${name}:latest`;
}

/** Whether two names mean the same model on a backend (see {@linkcode resolvedModelName}). */
export function sameModel(backend: Pick<Backend, "kind">, a: string, b: string): boolean {
  return a === b || resolvedModelName(backend, a) === resolvedModelName(backend, b);
}

/** The model of a list a name means on a backend: the one of that very name, else the one it resolves to. */
export function findModel<T extends { id: string }>(
  backend: Pick<Backend, "kind">,
  models: readonly T[],
  name: string,
): T | undefined {
  return models.find((m) => m.id === name) ?? models.find((m) => sameModel(backend, m.id, name));
}
