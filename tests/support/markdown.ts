/**
 * Reads the project's Markdown pages as the tests that follow them need:
 * headings and their GitHub anchors, links, code blocks, and the shell
 * commands written in those blocks.
 */

/** A fenced code block, with the info string's language and the line it starts on (1-based). */
export interface CodeBlock {
  lang: string;
  text: string;
  line: number;
}

/** A link target written in a page (`[text](target)`, `![alt](target)` or `[label]: target`). */
export interface MarkdownLink {
  target: string;
  line: number;
}

/** One line of a page: inside a fenced code block (fences included) or not, and which fence it is. */
interface PageLine {
  text: string;
  inCode: boolean;
  /** The language of the block this line opens. */
  opens?: string;
  closes?: boolean;
}

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w-]*)/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;

function pageLines(markdown: string): PageLine[] {
  let fence: string | undefined;
  return markdown.split("\n").map((text) => {
    const match = FENCE.exec(text);
    if (fence === undefined) {
      if (!match) return { text, inCode: false };
      fence = match[1];
      return { text, inCode: true, opens: match[2] };
    }
    if (match && match[1][0] === fence[0] && match[1].length >= fence.length && !match[2]) {
      fence = undefined;
      return { text, inCode: true, closes: true };
    }
    return { text, inCode: true };
  });
}

/** The fenced code blocks of a page, in order. */
export function codeBlocks(markdown: string): CodeBlock[] {
  const blocks: CodeBlock[] = [];
  let open: CodeBlock | undefined;
  pageLines(markdown).forEach((line, index) => {
    if (line.opens !== undefined) open = { lang: line.opens, text: "", line: index + 1 };
    else if (line.closes) blocks.push(open!);
    else if (open && line.inCode) open.text += `${line.text}\n`;
  });
  return blocks;
}

/**
 * The part of a page under the heading whose text is `heading`, up to the
 * next heading of the same or a higher level; throws when there is none.
 */
export function sectionOf(markdown: string, heading: string): string {
  const lines = pageLines(markdown);
  const start = lines.findIndex((l) => !l.inCode && HEADING.exec(l.text)?.[2] === heading);
  if (start < 0) throw new Error(`Cannot find the section "${heading}"`);
  const level = HEADING.exec(lines[start].text)![1].length;
  const end = lines.findIndex((l, i) => {
    const match = i > start && !l.inCode ? HEADING.exec(l.text) : null;
    return match !== null && match[1].length <= level;
  });
  return lines.slice(start, end < 0 ? undefined : end).map((l) => l.text).join("\n");
}

/**
 * The anchor GitHub gives a heading: its text as rendered (a link's text, a
 * code span's content), lower-cased, every character that is not a letter,
 * mark, digit, `_`, `-` or space dropped, and spaces turned into `-`.
 */
export function githubSlug(heading: string): string {
  return heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1")
    .replace(/`([^`]*)`/g, "$1")
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, "")
    .replace(/ /g, "-");
}

/** The anchors a page's headings produce; a repeated one gets `-1`, `-2`, … as on GitHub. */
export function headingAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  for (const line of pageLines(markdown)) {
    const match = line.inCode ? null : HEADING.exec(line.text);
    if (!match) continue;
    const slug = githubSlug(match[2]);
    let anchor = slug;
    for (let n = 1; anchors.has(anchor); n++) anchor = `${slug}-${n}`;
    anchors.add(anchor);
  }
  return anchors;
}

/** The link targets a page writes outside code, with their lines. */
export function linksIn(markdown: string): MarkdownLink[] {
  const links: MarkdownLink[] = [];
  pageLines(markdown).forEach((line, index) => {
    if (line.inCode) return;
    const text = line.text.replace(/`[^`]*`/g, "``");
    const definition = /^ {0,3}\[[^\]]+\]:\s*(\S+)/.exec(text);
    if (definition) links.push({ target: definition[1], line: index + 1 });
    for (const match of text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
      links.push({ target: match[1], line: index + 1 });
    }
  });
  return links;
}

/**
 * The commands of a shell block, as a reader types them: continued lines
 * joined, comments and blank lines left out.
 */
export function shellCommands(block: string): string[] {
  return block.replace(/\\\n\s*/g, " ").split("\n").map(withoutComment).filter((c) => c !== "");
}

/** A command line up to its comment (`#` after a space, outside quotes), trimmed. */
function withoutComment(line: string): string {
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote) {
      if (c === quote) quote = undefined;
    } else if (c === "'" || c === '"') {
      quote = c;
    } else if (c === "#" && (i === 0 || /\s/.test(line[i - 1]))) {
      return line.slice(0, i).trim();
    }
  }
  return line.trim();
}

/** The words of a command as a shell splits them (quotes removed; no expansions). */
export function shellWords(command: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  let quote: string | undefined;
  for (const c of command) {
    if (quote) {
      if (c === quote) quote = undefined;
      else word = (word ?? "") + c;
    } else if (c === "'" || c === '"') {
      quote = c;
      word ??= "";
    } else if (/\s/.test(c)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else {
      word = (word ?? "") + c;
    }
  }
  if (quote) throw new SyntaxError(`Cannot split command: unclosed ${quote} in ${command}`);
  if (word !== undefined) words.push(word);
  return words;
}

/** A command's leading `NAME=value` assignments, and the words after them. */
export function withAssignments(words: string[]): { env: Record<string, string>; args: string[] } {
  const env: Record<string, string> = {};
  let i = 0;
  for (; i < words.length; i++) {
    const match = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(words[i]);
    if (!match) break;
    env[match[1]] = match[2];
  }
  return { env, args: words.slice(i) };
}
