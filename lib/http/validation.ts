/** Reading request bodies: JSON, then zod issues as field problems for one 400. */
import * as z from "zod/mini";
import { errorMessage } from "../core/error_message.ts";
import { findTooDeep } from "../core/json_depth.ts";
import { ApiError, type FieldProblem, invalidRequest } from "./errors.ts";

/** Turns zod issues into field problems named like `messages[2].content`. */
export function zodProblems(issues: readonly z.core.$ZodIssue[]): FieldProblem[] {
  return issues.map((issue) => {
    const param = issue.path.length === 0
      ? "body"
      : issue.path.map((p, i) =>
        typeof p === "number" ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`
      ).join("");
    // Zod reports a missing key as an invalid type with input undefined (parsed with reportInput).
    const missing = issue.code === "invalid_type" && issue.input === undefined &&
      issue.path.length > 0;
    return { param, message: missing ? "is required" : issue.message };
  });
}

/**
 * Issues of an inner parse, to add to the outer one. Zod's type for them has
 * `input` optional and a raw issue needs it, but `reportInput` put it there.
 */
export function asRaw(issues: readonly z.core.$ZodIssue[]): z.core.$ZodRawIssue[] {
  return issues as z.core.$ZodRawIssue[];
}

/**
 * A check that asks `problem` what is wrong with a value and reports its
 * answer as the issue, for rules whose message depends on the value.
 */
export function problemCheck<T>(problem: (value: T) => string | undefined): z.core.$ZodCheck<T> {
  return z.check<T>((payload) => {
    const message = problem(payload.value);
    if (message !== undefined) {
      payload.issues.push({ code: "custom", input: payload.value, message });
    }
  });
}

/**
 * Reads a JSON body, or throws a 400 naming the syntax error, or the field
 * that nests too deeply: that is measured on the text, before parsing it,
 * since parsing and everything after it takes time in proportion to depth.
 */
export async function readJson(request: Request): Promise<unknown> {
  const text = await request.text();
  const tooDeep = findTooDeep(text);
  if (tooDeep) throw invalidRequest([{ param: tooDeep.path, message: tooDeep.problem }]);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ApiError(400, `Invalid JSON body: ${errorMessage(err)}`, {
      code: "invalid_json",
      param: "body",
    });
  }
}
