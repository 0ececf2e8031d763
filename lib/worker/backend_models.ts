/**
 * Asks one backend which models it serves: `GET {base}/models` on every kind,
 * and for Ollama its native `POST /api/show` for each model's capabilities
 * (chat, embedding, vision, tools, …), which the OpenAI-compatible list does
 * not carry; other kinds cannot say, and their models count as chat models
 * unless configuration lists them (`=embedding`). A backend given an explicit
 * list in configuration is only checked for being up.
 * The reason a backend is down is published where clients may read it, so it
 * names the backend and what failed, never its address.
 */
import { type Backend, configuredModels, findModel } from "../core/backends.ts";
import { type BackendReport, chats, embeds, type ModelInfo } from "../core/catalogue.ts";
import { errorMessage } from "../core/error_message.ts";
import { shorten } from "../core/text.ts";

/** Models published per backend at most, so a record stays small (a Deno KV value holds 64 KiB). */
const MAX_MODELS = 200;
/** Longest model id kept. */
const MAX_ID_LENGTH = 256;

/** Options for {@linkcode checkBackend}. */
export interface CheckBackendOptions {
  /** Time allowed for each request. */
  timeoutMs: number;
  /** The last report, whose models a backend that is down is published with. */
  previous?: BackendReport;
}

/** Asks a backend what it serves; a backend that cannot be asked is reported down, with the reason. */
export async function checkBackend(
  backend: Backend,
  options: CheckBackendOptions,
): Promise<BackendReport> {
  const base = { name: backend.name, kind: backend.kind, checked_at: new Date().toISOString() };
  try {
    const listed = await listModels(backend, options.timeoutMs);
    const models = backend.models.length > 0
      ? configuredModels(backend)
      : backend.kind === "ollama"
      ? await withOllamaCapabilities(backend, listed, options.timeoutMs)
      : listed.map((m) => ({ ...m, capabilities: ["completion"] }));
    return { ...base, status: "up", default_model: defaultModel(backend, models), models };
  } catch (err) {
    return {
      ...base,
      status: "down",
      error: shorten(errorMessage(err).replace(/ for url \([^)]*\)/g, ""), 300),
      default_model: options.previous?.default_model ?? backend.model,
      models: options.previous?.models ?? [],
    };
  }
}

/**
 * The configured default when the backend serves it, under the name the
 * backend lists it by (Ollama's `llava:latest` for `llava`), else the first
 * chat model it serves.
 */
function defaultModel(backend: Backend, models: readonly ModelInfo[]): string | undefined {
  const configured = backend.model && findModel(backend, models, backend.model);
  return configured ? configured.id : models.find(chats)?.id ?? backend.model;
}

/** `GET {base}/models`: OpenAI's `{ data: [...] }` or a bare list, as Open WebUI accepts. */
async function listModels(
  backend: Backend,
  timeoutMs: number,
): Promise<{ id: string; created?: number }[]> {
  const url = `${backend.baseUrl}/models`;
  const body = await requestJson(backend, url, { method: "GET", timeoutMs });
  const entries = Array.isArray(body) ? body : (body as { data?: unknown })?.data;
  if (!Array.isArray(entries)) throw new Error(`Backend "${backend.name}" sent no model list`);
  return entries
    .filter((e): e is { id: string; created?: unknown } =>
      typeof e?.id === "string" && e.id.length > 0 && e.id.length <= MAX_ID_LENGTH
    )
    .slice(0, MAX_MODELS)
    .map((e) => ({
      id: e.id,
      ...(typeof e.created === "number" && Number.isFinite(e.created)
        ? { created: e.created }
        : {}),
    }));
}

/**
 * Ollama's capabilities for each listed model: those that chat or embed are
 * kept (others, such as image generators, are left out). A model whose
 * details cannot be read is kept as a chat model whose capabilities are
 * unknown, so images or embedding requests sent to it still reach Ollama,
 * which decides.
 */
async function withOllamaCapabilities(
  backend: Backend,
  listed: readonly { id: string; created?: number }[],
  timeoutMs: number,
): Promise<ModelInfo[]> {
  const url = `${ollamaRoot(backend.baseUrl!)}/api/show`;
  const models = await Promise.all(listed.map(async (model): Promise<ModelInfo> => {
    try {
      const body = await requestJson(backend, url, {
        method: "POST",
        body: JSON.stringify({ model: model.id }),
        timeoutMs,
      }) as { capabilities?: unknown };
      // Ollama before 0.6 sends none.
      if (!Array.isArray(body?.capabilities)) return unknownCapabilities(model);
      const capabilities = body.capabilities.filter((c): c is string => typeof c === "string");
      return { ...model, capabilities };
    } catch {
      return unknownCapabilities(model);
    }
  }));
  return models.filter((m) => chats(m) || embeds(m));
}

function unknownCapabilities(model: { id: string; created?: number }): ModelInfo {
  return { ...model, capabilities: ["completion"], capabilities_unknown: true };
}

/** The last two segments of a URL's path, e.g. "v1/models", for messages that must not hold the address. */
function path(url: string): string {
  return new URL(url).pathname.split("/").slice(-2).join("/");
}

/** Ollama's native API lives at the root its OpenAI-compatible `/v1` hangs from. */
export function ollamaRoot(baseUrl: string): string {
  return baseUrl.replace(/\/+$/, "").replace(/\/v1$/, "");
}

async function requestJson(
  backend: Backend,
  url: string,
  options: { method: string; body?: string; timeoutMs: number },
): Promise<unknown> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (options.body) headers["content-type"] = "application/json";
  if (backend.apiKey) headers.authorization = `Bearer ${backend.apiKey}`;
  let response: Response;
  try {
    response = await fetch(url, {
      method: options.method,
      headers,
      body: options.body,
      signal: AbortSignal.timeout(options.timeoutMs),
    });
  } catch (err) {
    if (err instanceof Error && err.name === "TimeoutError") {
      throw new Error(
        `Backend "${backend.name}" did not answer ${path(url)} within ${
          options.timeoutMs / 1000
        } s`,
      );
    }
    throw new Error(`Cannot reach backend "${backend.name}": ${errorMessage(err)}`);
  }
  const text = await response.text();
  if (!response.ok) {
    throw new Error(`Backend "${backend.name}" answered ${response.status} to ${path(url)}`);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`Backend "${backend.name}" sent no JSON to ${path(url)}`);
  }
}
