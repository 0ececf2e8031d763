/**
 * DynamoDB's attribute values (`{"S": "hi"}`, `{"M": {...}}`) to and from
 * plain values, as the SDK's document client converts them with
 * `removeUndefinedValues`: undefined is left out, numbers come back as
 * numbers, binary as `Uint8Array`, string and number sets as `Set`s. Unlike
 * the SDK, a stored number past 2^53 reads back as the nearest `number`, not
 * a `BigInt` (the gateway stores counts and times).
 */

/** One attribute value as DynamoDB's JSON protocol writes it. */
export type AttributeValue =
  | { S: string }
  | { N: string }
  | { BOOL: boolean }
  | { NULL: true }
  | { B: string }
  | { L: AttributeValue[] }
  | { M: AttributeMap }
  | { SS: string[] }
  | { NS: string[] }
  | { BS: string[] };

/** An item, a key or a set of expression values, as sent. */
export type AttributeMap = Record<string, AttributeValue>;

/** A plain item, key or set of expression values. */
export type PlainMap = Record<string, unknown>;

/** Converts a plain map (an item, a key, expression values) to attribute values. */
export function toAttributeMap(map: PlainMap | undefined): AttributeMap {
  const out: AttributeMap = {};
  for (const [name, value] of Object.entries(map ?? {})) {
    if (value === undefined || typeof value === "function") continue;
    out[name] = toAttributeValue(value, name);
  }
  return out;
}

/** Converts attribute values back to a plain map. */
export function fromAttributeMap(map: AttributeMap): PlainMap {
  const out: PlainMap = {};
  for (const [name, value] of Object.entries(map)) out[name] = fromAttributeValue(value);
  return out;
}

function toAttributeValue(value: unknown, path: string): AttributeValue {
  switch (typeof value) {
    case "string":
      return { S: value };
    case "boolean":
      return { BOOL: value };
    case "number":
      if (!Number.isFinite(value)) {
        throw new TypeError(`Cannot store ${value} at "${path}": DynamoDB numbers are finite`);
      }
      // As the SDK refuses: an integer past 2^53 has already lost digits.
      if (Number.isInteger(value) && !Number.isSafeInteger(value)) {
        throw new TypeError(`Cannot store ${value} at "${path}": past the safe integers`);
      }
      return { N: String(value) };
    case "bigint":
      return { N: value.toString() };
  }
  if (value === null) return { NULL: true };
  if (Array.isArray(value)) {
    return {
      L: value
        .filter((v) => v !== undefined && typeof v !== "function")
        .map((v, i) => toAttributeValue(v, `${path}[${i}]`)),
    };
  }
  if (value instanceof Uint8Array) return { B: toBase64(value) };
  if (value instanceof ArrayBuffer) return { B: toBase64(new Uint8Array(value)) };
  if (value instanceof Set) return toSet(value, path);
  if (typeof value === "object" && isPlainObject(value)) {
    const entries: AttributeMap = {};
    for (const [name, v] of Object.entries(value)) {
      if (v === undefined || typeof v === "function") continue;
      entries[name] = toAttributeValue(v, `${path}.${name}`);
    }
    return { M: entries };
  }
  throw new TypeError(`Cannot store the ${describeType(value)} at "${path}" in DynamoDB`);
}

function toSet(set: Set<unknown>, path: string): AttributeValue {
  const members = [...set].filter((m) => m !== undefined);
  if (members.length === 0) throw new TypeError(`Cannot store an empty set at "${path}"`);
  if (members.every((m) => typeof m === "string")) return { SS: members as string[] };
  if (members.every((m) => typeof m === "number" || typeof m === "bigint")) {
    return { NS: members.map((m) => String(m)) };
  }
  if (members.every((m) => m instanceof Uint8Array)) {
    return { BS: (members as Uint8Array[]).map(toBase64) };
  }
  throw new TypeError(`Cannot store the set at "${path}": its members are of mixed types`);
}

function fromAttributeValue(value: AttributeValue): unknown {
  if ("S" in value) return value.S;
  if ("N" in value) return Number(value.N);
  if ("BOOL" in value) return value.BOOL;
  if ("NULL" in value) return null;
  if ("M" in value) return fromAttributeMap(value.M);
  if ("L" in value) return value.L.map(fromAttributeValue);
  if ("B" in value) return fromBase64(value.B);
  if ("SS" in value) return new Set(value.SS);
  if ("NS" in value) return new Set(value.NS.map(Number));
  if ("BS" in value) return new Set(value.BS.map(fromBase64));
  throw new TypeError(`DynamoDB sent an attribute value of no known type: ${Object.keys(value)}`);
}

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function describeType(value: unknown): string {
  return typeof value === "object" ? value?.constructor?.name ?? "object" : typeof value;
}

function toBase64(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

function fromBase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}
