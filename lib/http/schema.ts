/**
 * The few zod schemas the request bodies use, written out: the same calls
 * (`z.object`, `z.string().trim().min()`, `safeParse`…), the same issues
 * (code, path, message) and zod's English default messages, in a few kB
 * instead of zod's few hundred, which the Lambda bundle would carry.
 * tests/schema_test.ts holds it to zod's behaviour.
 */

/** One problem found in a value, shaped like zod's issues. */
export interface Issue {
  code: string;
  /** Where in the value, from its root: keys and array indexes. */
  path: PropertyKey[];
  message: string;
  input?: unknown;
  /** Set by checks (min, max, refine…): the value had the right type, so later checks still ran. */
  continue?: boolean;
}

/** The outcome of {@linkcode Schema.safeParse}. */
export type SafeParseResult<T> =
  | { success: true; data: T }
  | { success: false; error: { issues: Issue[] } };

/** What a schema's transform can do besides returning the new value. */
export interface TransformContext {
  addIssue(issue: Omit<Issue, "path"> & { path?: PropertyKey[] }): void;
}

/** A value being parsed and the issues found so far (paths relative to it). */
interface Payload {
  value: unknown;
  issues: Issue[];
}

/**
 * A check runs after the type test, in order. Length checks (`length`) run even
 * after a failed type test when the value has a length, as zod's do; the
 * others only on a value of the right type. `max` lets an array refuse an
 * over-long input before looking at its items.
 */
interface Check {
  run(payload: Payload, schemaError: string | undefined): void;
  length?: true;
  max?: number;
}

type Parse = (payload: Payload) => void;

/** The type a schema outputs. */
export type Infer<S> = S extends Schema<infer T> ? T : never;

/** A message, or zod's `{ error }` / `{ message }` parameter object. */
type Message = string | { error?: string; message?: string };

function messageOf(message: Message | undefined): string | undefined {
  return typeof message === "string" ? message : message?.error ?? message?.message;
}

/** What `z.NEVER` stands for: a transform's return value after it added an issue. */
export const NEVER = Object.freeze({ never: true }) as never;

type Absent = "" | "optional" | "nullish";

/** How a schema is made; `check()` copies it with one more check. */
interface SchemaParts {
  parse: Parse;
  /** The message the schema was made with: its type issue's, and its checks' unless they have their own. */
  error?: string;
  checks?: readonly Check[];
  absent?: Absent;
  /** Turns the input into a value with a length, to test leading max checks before parsing (arrays). */
  size?: (input: unknown) => number;
}

/** A schema: a type test, then checks and transforms in the order they were added. */
export class Schema<T> {
  /** For type inference only. */
  declare readonly _output: T;
  readonly #parts: SchemaParts;

  constructor(parts: SchemaParts) {
    this.#parts = parts;
  }

  /** Parses without throwing. The options are accepted for zod's sake; input is always reported. */
  safeParse(input: unknown, _options?: { reportInput?: boolean }): SafeParseResult<T> {
    const { value, issues } = this.run(input);
    return issues.length === 0
      ? { success: true, data: value as T }
      : { success: false, error: { issues } };
  }

  /** Runs the schema; issue paths are relative to `input`. */
  run(input: unknown): Payload {
    const { parse, error, checks = [], absent = "", size } = this.#parts;
    if (input === undefined && absent !== "") return { value: input, issues: [] };
    if (input === null && absent === "nullish") return { value: input, issues: [] };
    const payload: Payload = { value: input, issues: [] };
    const cap = size && leadingMax(checks, size(input));
    if (cap) {
      cap.run(payload, error);
      for (const issue of payload.issues) issue.continue = false;
      return payload;
    }
    parse(payload);
    for (const check of checks) {
      if (
        check.length ? !hasLength(payload.value) || explicitlyAborted(payload) : aborted(payload)
      ) {
        continue;
      }
      check.run(payload, error);
    }
    return payload;
  }

  /** The same schema, also accepting `undefined`. */
  optional(): Schema<T | undefined> {
    return new Schema<T | undefined>({ ...this.#parts, absent: "optional" });
  }

  /** The same schema, also accepting `undefined` and `null`. */
  nullish(): Schema<T | undefined | null> {
    return new Schema<T | undefined | null>({ ...this.#parts, absent: "nullish" });
  }

  /** Adds a test of the value; `message` is the issue when it fails. */
  refine(test: (value: T) => boolean, message?: Message): this {
    return this.check({
      run(payload, schemaError) {
        if (!test(payload.value as T)) {
          payload.issues.push(
            checkIssue("custom", payload.value, message, schemaError, "Invalid input"),
          );
        }
      },
    });
  }

  /** Maps the value; the transform may add issues instead (and return `NEVER`). */
  transform<U>(fn: (value: T, context: TransformContext) => U): Schema<U> {
    const transform: Check = {
      run(payload) {
        const context: TransformContext = {
          addIssue: (issue) => payload.issues.push({ path: [], ...issue }),
        };
        payload.value = fn(payload.value as T, context);
      },
    };
    return new Schema<U>({ ...this.#parts, checks: [...this.#parts.checks ?? [], transform] });
  }

  /** A copy with one more check; subclasses keep their own class and public fields. */
  protected check(check: Check): this {
    const Kind = this.constructor as new (parts: SchemaParts) => this;
    const parts = { ...this.#parts, checks: [...this.#parts.checks ?? [], check] };
    return Object.assign(new Kind(parts), this);
  }
}

/** A string schema, with zod's string checks. */
export class StringSchema extends Schema<string> {
  /** Trims the value before the checks that follow. */
  trim(): this {
    return this.check({
      run(payload) {
        payload.value = (payload.value as string).trim();
      },
    });
  }

  min(length: number, message?: Message): this {
    return this.check(lengthCheck("string", ">=", length, message));
  }

  max(length: number, message?: Message): this {
    return this.check(lengthCheck("string", "<=", length, message));
  }
}

/** A number schema, with zod's number checks. */
export class NumberSchema extends Schema<number> {
  min(limit: number, message?: Message): this {
    return this.check(numberCheck(">=", limit, message));
  }

  max(limit: number, message?: Message): this {
    return this.check(numberCheck("<=", limit, message));
  }

  positive(message?: Message): this {
    return this.check(numberCheck(">", 0, message));
  }
}

/** An array schema, with zod's length checks. */
export class ArraySchema<T> extends Schema<T[]> {
  min(length: number, message?: Message): this {
    return this.check(lengthCheck("array", ">=", length, message));
  }

  /** An input over the maximum gets this one issue, and its items are not looked at. */
  max(length: number, message?: Message): this {
    return this.check(lengthCheck("array", "<=", length, message));
  }
}

/** Schemas by key. */
export type Shape = Record<string, Schema<unknown>>;

type ShapeOutput<S extends Shape> = { [K in keyof S]: Infer<S[K]> };

function aborted(payload: Payload): boolean {
  return payload.issues.some((issue) => issue.continue !== true);
}

function explicitlyAborted(payload: Payload): boolean {
  return payload.issues.some((issue) => issue.continue === false);
}

function hasLength(value: unknown): boolean {
  return value != null && (value as { length?: unknown }).length !== undefined;
}

/** The first of the leading max checks that `size` exceeds (zod stops there before parsing). */
function leadingMax(checks: readonly Check[], size: number): Check | undefined {
  for (const check of checks) {
    if (!check.length) return undefined;
    if (check.max !== undefined && size > check.max) return check;
  }
  return undefined;
}

function typeIssue(input: unknown, expected: string, message: string | undefined): Issue {
  return {
    code: "invalid_type",
    path: [],
    input,
    message: message ?? `Invalid input: expected ${expected}, received ${receivedType(input)}`,
  };
}

/** An issue of a check: its own message, else the schema's, else zod's default. */
function checkIssue(
  code: string,
  input: unknown,
  message: Message | undefined,
  schemaError: string | undefined,
  fallback: string,
): Issue {
  return {
    code,
    path: [],
    input,
    message: messageOf(message) ?? schemaError ?? fallback,
    continue: true,
  };
}

function receivedType(input: unknown): string {
  if (input === null) return "null";
  if (Array.isArray(input)) return "array";
  if (typeof input === "number" && Number.isNaN(input)) return "NaN";
  return typeof input;
}

function lengthCheck(
  kind: "string" | "array",
  relation: ">=" | "<=",
  limit: number,
  message: Message | undefined,
): Check {
  const unit = kind === "string" ? "characters" : "items";
  const small = relation === ">=";
  return {
    length: true,
    max: small ? undefined : limit,
    run(payload, schemaError) {
      const size = (payload.value as { length: number }).length;
      if (small ? size >= limit : size <= limit) return;
      const word = small ? "small" : "big";
      payload.issues.push(
        checkIssue(
          small ? "too_small" : "too_big",
          payload.value,
          message,
          schemaError,
          `Too ${word}: expected ${kind} to have ${relation}${limit} ${unit}`,
        ),
      );
    },
  };
}

function numberCheck(relation: ">=" | "<=" | ">", limit: number, message?: Message): Check {
  return {
    run(payload, schemaError) {
      const value = payload.value as number;
      const ok = relation === ">="
        ? value >= limit
        : relation === "<="
        ? value <= limit
        : value > limit;
      if (ok) return;
      const big = relation === "<=";
      payload.issues.push(
        checkIssue(
          big ? "too_big" : "too_small",
          value,
          message,
          schemaError,
          `Too ${big ? "big" : "small"}: expected number to be ${relation}${limit}`,
        ),
      );
    },
  };
}

/** A schema of one type, made with zod's optional message. */
function typed<S>(
  Kind: new (parts: SchemaParts) => S,
  expected: string,
  test: (input: unknown) => boolean,
  message?: Message,
): S {
  const error = messageOf(message);
  return new Kind({
    error,
    parse(payload) {
      if (!test(payload.value)) payload.issues.push(typeIssue(payload.value, expected, error));
    },
  });
}

function isPlainObject(input: unknown): input is Record<string, unknown> {
  return typeof input === "object" && input !== null && !Array.isArray(input);
}

/** Runs an inner schema at `key` and moves its issues under that key. */
function runAt(schema: Schema<unknown>, input: unknown, key: PropertyKey, issues: Issue[]) {
  const result = schema.run(input);
  for (const issue of result.issues) issues.push({ ...issue, path: [key, ...issue.path] });
  return result.value;
}

/** An object schema keeps its shape, so a discriminated union can look at its options' keys. */
class ObjectSchema<T> extends Schema<T> {
  declare readonly shape: Shape;
}

function objectSchema<S extends Shape>(shape: S, loose: boolean, message?: Message) {
  const error = messageOf(message);
  const schema = new ObjectSchema<ShapeOutput<S>>({
    error,
    parse(payload) {
      const input = payload.value;
      if (!isPlainObject(input)) {
        payload.issues.push(typeIssue(input, "object", error));
        return;
      }
      const output: Record<string, unknown> = loose ? { ...input } : {};
      for (const [key, schema] of Object.entries(shape)) {
        const value = runAt(schema, input[key], key, payload.issues);
        if (value !== undefined || key in input) output[key] = value;
      }
      payload.value = output;
    },
  });
  return Object.assign(schema, { shape });
}

/** A literal schema remembers its value, so a discriminated union can choose by it. */
class LiteralSchema<T> extends Schema<T> {
  declare readonly literal: T;
}

/** The literal a discriminated union's option declares at `key`. */
function literalAt(schema: Schema<unknown>, key: string): unknown {
  const literal = schema instanceof ObjectSchema ? schema.shape[key] : undefined;
  if (!(literal instanceof LiteralSchema)) {
    throw new TypeError(
      `Cannot build discriminated union: an option has no literal "${key}" in its shape`,
    );
  }
  return literal.literal;
}

/** The first option that parses; when exactly one failed only in its checks, its issues. */
function unionSchema<T>(options: readonly Schema<T>[], message?: Message): Schema<T> {
  const error = messageOf(message);
  return new Schema<T>({
    error,
    parse(payload) {
      const results = options.map((option) => option.run(payload.value));
      const success = results.find((result) => result.issues.length === 0);
      if (success) {
        payload.value = success.value;
        return;
      }
      const checked = results.filter((result) => !aborted(result));
      if (checked.length === 1) {
        payload.value = checked[0].value;
        payload.issues.push(...checked[0].issues);
        return;
      }
      payload.issues.push({
        code: "invalid_union",
        path: [],
        input: payload.value,
        message: error ?? "Invalid input",
      });
    },
  });
}

/** Chooses the option whose literal at `key` matches the value's. */
function discriminatedUnionSchema<T>(
  key: string,
  options: readonly Schema<T>[],
  message?: Message,
): Schema<T> {
  const error = messageOf(message);
  const tagged = options.map((schema) => ({ schema, tag: literalAt(schema, key) }));
  return new Schema<T>({
    error,
    parse(payload) {
      const input = payload.value;
      if (!isPlainObject(input)) {
        payload.issues.push(typeIssue(input, "object", error));
        return;
      }
      const option = tagged.find((o) => o.tag === input[key]);
      if (!option) {
        payload.issues.push({
          code: "invalid_union",
          path: [key],
          input: input[key],
          message: error ?? "Invalid input",
        });
        return;
      }
      const result = option.schema.run(input);
      payload.value = result.value;
      payload.issues.push(...result.issues);
    },
  });
}

/** Tests a URL as zod does: parsed by `URL`, its protocol (without the colon) matched. */
function urlSchema(params: { protocol?: RegExp; error?: string; message?: string }) {
  const error = messageOf(params);
  // zod asks an http(s)-only URL to start with "http(s)://", so "http:example.com" fails.
  const needsSlashes = params.protocol?.source === "^https?$";
  return new StringSchema({
    error,
    parse(payload) {
      const input = payload.value;
      if (typeof input !== "string") {
        payload.issues.push(typeIssue(input, "string", error));
        return;
      }
      const trimmed = input.trim();
      const url = needsSlashes && !/^https?:\/\//i.test(trimmed) ? null : URL.parse(trimmed);
      if (!url || (params.protocol && !params.protocol.test(url.protocol.replace(/:$/, "")))) {
        payload.issues.push(checkIssue("invalid_format", input, error, undefined, "Invalid URL"));
        return;
      }
      payload.value = trimmed.replace(/[\t\n\r]/g, "");
    },
  });
}

/** The zod calls the request schemas use. */
export const z = {
  NEVER,

  string: (message?: Message): StringSchema =>
    typed(StringSchema, "string", (v) => typeof v === "string", message),

  number: (message?: Message): NumberSchema =>
    typed(NumberSchema, "number", Number.isFinite, message),

  int: (message?: Message): NumberSchema =>
    typed(NumberSchema, "int", Number.isSafeInteger, message),

  boolean: (message?: Message): Schema<boolean> =>
    typed(Schema<boolean>, "boolean", (v) => typeof v === "boolean", message),

  unknown: (): Schema<unknown> => new Schema<unknown>({ parse: () => {} }),

  literal<const T extends string | number | boolean>(value: T, message?: Message) {
    const error = messageOf(message);
    const schema = new LiteralSchema<T>({
      error,
      parse(payload) {
        if (payload.value === value) return;
        payload.issues.push({
          code: "invalid_value",
          path: [],
          input: payload.value,
          message: error ?? `Invalid input: expected ${JSON.stringify(value)}`,
        });
      },
    });
    return Object.assign(schema, { literal: value });
  },

  enum<const T extends readonly string[]>(values: T, message?: Message): Schema<T[number]> {
    const error = messageOf(message);
    return new Schema<T[number]>({
      error,
      parse(payload) {
        if (values.includes(payload.value as string)) return;
        payload.issues.push({
          code: "invalid_value",
          path: [],
          input: payload.value,
          message: error ??
            `Invalid option: expected one of ${values.map((v) => JSON.stringify(v)).join("|")}`,
        });
      },
    });
  },

  url: (params: { protocol?: RegExp; error?: string; message?: string } = {}): StringSchema =>
    urlSchema(params),

  array<T>(item: Schema<T>, message?: Message): ArraySchema<T> {
    const error = messageOf(message);
    return new ArraySchema<T>({
      error,
      size: (input) => Array.isArray(input) ? input.length : -1,
      parse(payload) {
        const input = payload.value;
        if (!Array.isArray(input)) {
          payload.issues.push(typeIssue(input, "array", error));
          return;
        }
        payload.value = input.map((value, index) => runAt(item, value, index, payload.issues));
      },
    });
  },

  /** An object that keeps only the keys of its shape. */
  object: <S extends Shape>(shape: S, message?: Message): Schema<ShapeOutput<S>> =>
    objectSchema(shape, false, message),

  /** An object that keeps every key, checking those of its shape. */
  looseObject: <S extends Shape>(
    shape: S,
    message?: Message,
  ): Schema<ShapeOutput<S> & Record<string, unknown>> =>
    objectSchema(shape, true, message) as Schema<ShapeOutput<S> & Record<string, unknown>>,

  union: <const O extends readonly Schema<unknown>[]>(
    options: O,
    message?: Message,
  ): Schema<Infer<O[number]>> =>
    unionSchema(options as readonly Schema<Infer<O[number]>>[], message),

  /** Options are object schemas with a literal at `key`. */
  discriminatedUnion: <const O extends readonly Schema<unknown>[]>(
    key: string,
    options: O,
    message?: Message,
  ): Schema<Infer<O[number]>> =>
    discriminatedUnionSchema(key, options as readonly Schema<Infer<O[number]>>[], message),
};
