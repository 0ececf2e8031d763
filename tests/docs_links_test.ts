/**
 * The pages hold together: every relative link in README.md and docs/*.md
 * names a file that exists and, with an `#anchor`, a heading of that file
 * (by GitHub's rules for anchors); and the README stays a front page that
 * links every page in docs/.
 */
import assert from "node:assert/strict";
import { dirname, join, relative } from "node:path";
import { PROJECT_DIR } from "./support/child_deno.ts";
import { githubSlug, headingAnchors, linksIn } from "./support/markdown.ts";

/** What a link check needs of the tree: a file's text, `""` for a file that is no page, or none. */
type ReadFile = (path: string) => string | undefined;

/** A link that points nowhere, as `file:line target: why`. */
function brokenLinks(file: string, markdown: string, read: ReadFile): string[] {
  const problems: string[] = [];
  for (const { target, line } of linksIn(markdown)) {
    // Other sites are not ours to check (and the tests have no network beyond loopback).
    if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith("//")) continue;
    const [path, anchor] = target.split("#", 2) as [string, string | undefined];
    const where = `${file}:${line} ${target}`;
    if (path.startsWith("/")) {
      problems.push(`${where}: absolute paths break outside GitHub; link relatively`);
      continue;
    }
    const targetFile = path === "" ? file : join(dirname(file), decodeURIComponent(path));
    const text = path === "" ? markdown : read(targetFile);
    if (text === undefined) {
      problems.push(`${where}: no file ${targetFile}`);
    } else if (anchor !== undefined && targetFile.endsWith(".md")) {
      if (!headingAnchors(text).has(anchor)) {
        problems.push(`${where}: no heading of ${targetFile} has the anchor #${anchor}`);
      }
    } else if (anchor !== undefined && !/^L\d+(-L\d+)?$/.test(anchor)) {
      problems.push(`${where}: ${targetFile} is no page, so it has no #${anchor}`);
    }
  }
  return problems;
}

/** Reads files of the project by their path from its root. */
function readProjectFile(path: string): string | undefined {
  const full = join(PROJECT_DIR, path);
  try {
    if (!Deno.statSync(full).isFile) return "";
    return full.endsWith(".md") ? Deno.readTextFileSync(full) : "";
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

/** README.md and every page in docs/, by their path from the project's root. */
function pages(): string[] {
  const docs = [...Deno.readDirSync(join(PROJECT_DIR, "docs"))]
    .filter((entry) => entry.isFile && entry.name.endsWith(".md"))
    .map((entry) => relative(PROJECT_DIR, join(PROJECT_DIR, "docs", entry.name)))
    .sort();
  return ["README.md", ...docs];
}

Deno.test("every relative link in README.md and docs/ points at a file and heading that exist", () => {
  const problems: string[] = [];
  let anchored = 0;
  for (const file of pages()) {
    const markdown = readProjectFile(file)!;
    anchored += linksIn(markdown).filter((l) => l.target.includes("#")).length;
    problems.push(...brokenLinks(file, markdown, readProjectFile));
  }
  assert.deepEqual(problems, []);
  // The pages link one another's sections, so a check that saw no anchors read nothing.
  assert.ok(anchored > 10, `only ${anchored} links with an anchor were found`);
});

Deno.test("the link check reports a missing file, a missing heading and a heading in code", () => {
  const tree: Record<string, string> = {
    "docs/a.md": "# Page A\n\n## Two words: here\n\n```sh\n# not a heading\n```\n",
    "docs/picture.png": "",
  };
  const page = [
    "[ok](a.md#two-words-here) ![ok](picture.png) [ok](#this-page) [ok](https://example.com/x)",
    "[gone](b.md)",
    "[no heading](a.md#page-b)",
    "[code](a.md#not-a-heading)",
    "`[in code](nowhere.md)`",
    "# This page",
  ].join("\n");
  assert.deepEqual(brokenLinks("docs/index.md", page, (path) => tree[path]), [
    "docs/index.md:2 b.md: no file docs/b.md",
    "docs/index.md:3 a.md#page-b: no heading of docs/a.md has the anchor #page-b",
    "docs/index.md:4 a.md#not-a-heading: no heading of docs/a.md has the anchor #not-a-heading",
  ]);
});

Deno.test("anchors follow GitHub's rules: lower case, spaces to '-', punctuation but '-' and '_' dropped", () => {
  assert.equal(githubSlug("1. Build the Lambda bundle"), "1-build-the-lambda-bundle");
  assert.equal(githubSlug("Rotating the worker's access key"), "rotating-the-workers-access-key");
  assert.equal(githubSlug("GET /jobs/:job_id"), "get-jobsjob_id");
  assert.equal(
    githubSlug("OpenAI-compatible: the `openai` SDKs"),
    "openai-compatible-the-openai-sdks",
  );
  assert.deepEqual([...headingAnchors("# Notes\n\n## Notes\n\n### Notes\n")], [
    "notes",
    "notes-1",
    "notes-2",
  ]);
});

Deno.test("the README is a front page: under 250 lines, linking every page in docs/", () => {
  const readme = readProjectFile("README.md")!;
  const lines = readme.split("\n").length;
  assert.ok(lines < 250, `README.md has ${lines} lines`);
  const linked = new Set(linksIn(readme).map((l) => l.target.split("#")[0]));
  const unlinked = pages().slice(1).filter((page) => !linked.has(page));
  assert.deepEqual(unlinked, []);
});
