/**
 * How deeply JSON text nests, measured on the raw text before anything parses
 * it. `JSON.parse` and everything that walks its result (schemas, copies,
 * `JSON.stringify`) do work, and recurse, in proportion to the depth: a 2 MB
 * body of a million nested arrays once stalled the whole process for seconds.
 * This scan counts `[` and `{` outside strings in one pass, without recursion,
 * and stops at the first level past the limit.
 */

/** The deepest nesting of arrays and objects a request body may have. */
export const MAX_JSON_DEPTH = 64;

/** Where JSON text nests too deeply. */
export interface JsonTooDeep {
  /** The path to the first value past the limit, like `extra[0][0]…` (`body` for the root). */
  path: string;
  /** What is wrong there, for a client: the limit it passes. */
  problem: string;
}

/** Segments of a path shown before it is cut with `…`. */
const SHOWN_SEGMENTS = 6;
/** Characters of a key shown in a path. */
const SHOWN_KEY_CHARS = 64;

/** One open array or object, as the scan sees it. */
interface Frame {
  /** The key (in an object) or index (in an array) of the value being read in it. */
  at: string | number;
  isObject: boolean;
  /** In an object: the next string is a key. */
  expectsKey: boolean;
}

/**
 * Why JSON text is refused for its nesting (arrays and objects more than
 * `maxDepth` deep), or undefined when it is not. O(n) in the text's length;
 * text that is not JSON is measured as far as it goes (its syntax is for the
 * parser to judge). {@linkcode findTooDeep} also says where.
 */
export function jsonDepthProblem(text: string, maxDepth = MAX_JSON_DEPTH): string | undefined {
  return findTooDeep(text, maxDepth)?.problem;
}

/**
 * Where JSON text first nests deeper than `maxDepth`, as a field's path
 * (`extra[0][0][0][0][0]…`), and why; undefined when it does not.
 */
export function findTooDeep(text: string, maxDepth = MAX_JSON_DEPTH): JsonTooDeep | undefined {
  const stack: Frame[] = [];
  for (let i = 0; i < text.length; i++) {
    const char = text.charCodeAt(i);
    if (char === QUOTE) {
      const end = stringEnd(text, i);
      const frame = stack.at(-1);
      if (frame?.isObject && frame.expectsKey) {
        frame.at = text.slice(i + 1, Math.min(end, i + 1 + SHOWN_KEY_CHARS));
        frame.expectsKey = false;
      }
      i = end;
    } else if (char === OPEN_BRACKET || char === OPEN_BRACE) {
      if (stack.length === maxDepth) {
        return {
          path: pathOf(stack),
          problem: `nested more than ${maxDepth} levels deep (arrays and objects)`,
        };
      }
      const isObject = char === OPEN_BRACE;
      stack.push({ at: isObject ? "" : 0, isObject, expectsKey: isObject });
    } else if (char === CLOSE_BRACKET || char === CLOSE_BRACE) {
      stack.pop();
    } else if (char === COMMA) {
      const frame = stack.at(-1);
      if (frame?.isObject) frame.expectsKey = true;
      else if (frame) frame.at = (frame.at as number) + 1;
    }
  }
  return undefined;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;

/** The index of the quote that closes the string opening at `start` (the text's length if none). */
function stringEnd(text: string, start: number): number {
  let at = start;
  while (true) {
    at = text.indexOf('"', at + 1);
    if (at < 0) return text.length;
    let backslashes = 0;
    while (text.charCodeAt(at - 1 - backslashes) === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return at;
  }
}

/** A path as the front door names fields: `messages[2].content`, cut after a few segments. */
function pathOf(stack: readonly Frame[]): string {
  const segments = stack.slice(0, SHOWN_SEGMENTS).map((frame, i) =>
    typeof frame.at === "number" ? `[${frame.at}]` : i === 0 ? frame.at : `.${frame.at}`
  );
  const path = segments.join("") + (stack.length > SHOWN_SEGMENTS ? "…" : "");
  return path === "" ? "body" : path;
}
