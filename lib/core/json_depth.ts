/**
 * A guard against deeply nested JSON, for use before a parser sees the text:
 * parsing, and every walk of what it gives, takes time and stack in
 * proportion to the nesting, so a few megabytes nested a million levels deep
 * stall a process that parses them. The check is one pass over the raw text,
 * without recursion, so it costs the same however deep the text goes.
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;

/** The deepest nesting of arrays and objects accepted by default. */
export const MAX_JSON_DEPTH = 64;

/**
 * Why JSON text is refused for its nesting (arrays and objects more than
 * `maxDepth` deep), or undefined when it is not. Text that is not JSON at all
 * is left for the parser to refuse.
 */
export function jsonDepthProblem(text: string, maxDepth = MAX_JSON_DEPTH): string | undefined {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++; // the escaped character cannot end the string
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) {
      inString = true;
    } else if (c === OPEN_BRACKET || c === OPEN_BRACE) {
      depth++;
      if (depth > maxDepth) {
        return `nested more than ${maxDepth} levels deep (arrays and objects)`;
      }
    } else if (c === CLOSE_BRACKET || c === CLOSE_BRACE) {
      depth--;
    }
  }
  return undefined;
}
