/** Reading request bodies: JSON, then schema issues (zod's shape) as field problems for one 400. */
import type { Issue } from "./schema.ts";
import { errorMessage } from "../core/error_message.ts";
import { ApiError, type FieldProblem } from "./errors.ts";

/** Turns schema issues into field problems named like `messages[2].content`. */
export function zodProblems(issues: readonly Issue[]): FieldProblem[] {
  return issues.map((issue) => {
    const param = issue.path.length === 0
      ? "body"
      : issue.path.map((p, i) =>
        typeof p === "number" ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`
      ).join("");
    // Zod reports a missing key as an invalid type with input undefined.
    const missing = issue.code === "invalid_type" && issue.input === undefined &&
      issue.path.length > 0;
    return { param, message: missing ? "is required" : issue.message };
  });
}

/** Reads a JSON body, or throws a 400 naming the syntax error. */
export async function readJson(request: Request): Promise<unknown> {
  const text = await request.text();
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ApiError(400, `Invalid JSON body: ${errorMessage(err)}`, {
      code: "invalid_json",
      param: "body",
    });
  }
}
