/** Structured logging: one JSON object a line, to stdout and optionally to a file. */
import { appendFileSync } from "node:fs";

/** How serious a log line is. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Extra fields of a log line, such as `job_id` or `request_id`. Never put a secret here. */
export type LogFields = Record<string, unknown>;

/** Writes structured log lines. */
export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

/** Options for {@linkcode createLogger}. */
export interface LoggerOptions {
  /** Also append every line to this file. */
  file?: string;
  /** Lines below this level are dropped. Default "info". */
  level?: LogLevel;
  /** Where lines go besides the file; default `console.log`. */
  write?: (line: string) => void;
}

const ORDER: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Creates a JSON-lines logger. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const min = ORDER[options.level ?? "info"];
  const write = options.write ?? ((line: string) => console.log(line));
  const emit = (level: LogLevel, message: string, fields?: LogFields) => {
    if (ORDER[level] < min) return;
    const line = JSON.stringify({ time: new Date().toISOString(), level, message, ...fields });
    write(line);
    if (options.file) appendFileSync(options.file, line + "\n");
  };
  return {
    debug: (message, fields) => emit("debug", message, fields),
    info: (message, fields) => emit("info", message, fields),
    warn: (message, fields) => emit("warn", message, fields),
    error: (message, fields) => emit("error", message, fields),
  };
}

/** A logger that drops everything, for tests that do not look at logs. */
export const silentLogger: Logger = createLogger({ write: () => {}, level: "error" });
