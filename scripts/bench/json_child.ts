/**
 * How the bench talks with the `deno` processes it starts (the worker, the
 * stand-in backend): one JSON object a line on the child's standard output,
 * `{"ready":…}` once it serves, `{"news":…}` whenever it has some, and
 * `{"answer":…}` for each command line the bench writes on its standard
 * input, in order. Closing its standard input stops it.
 */
import { lines } from "./lines.ts";

/** A child process started by {@linkcode startJsonChild}. */
export interface JsonChild<Ready> {
  readonly pid: number;
  /** What it said when it became ready. */
  readonly ready: Ready;
  /** Writes a command; resolves with the child's answer, rejects once it has ended. */
  ask(command: string): Promise<unknown>;
  /** Closes its standard input and waits for it to exit. */
  stop(): Promise<void>;
}

/** Options for {@linkcode startJsonChild}. */
export interface JsonChildOptions {
  /** What the child is, for error messages: "the bench's worker". */
  what: string;
  /** `deno` arguments. */
  args: string[];
  /** Its whole environment; without it, the bench's. */
  env?: Record<string, string>;
  /** Hears each piece of news. */
  onNews?: (news: unknown) => void;
}

/** Starts a child and resolves once it is ready; rejects if it ends first. */
export async function startJsonChild<Ready>(options: JsonChildOptions): Promise<JsonChild<Ready>> {
  const child = new Deno.Command("deno", {
    args: options.args,
    ...(options.env ? { clearEnv: true, env: options.env } : {}),
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const ready = Promise.withResolvers<Ready>();
  const answers: PromiseWithResolvers<unknown>[] = [];
  let ended: Error | undefined;
  const reading = (async () => {
    try {
      for await (const line of lines(child.stdout)) {
        let message: { ready?: Ready; news?: unknown; answer?: unknown };
        try {
          message = JSON.parse(line);
        } catch {
          console.error(line); // not a message: show it
          continue;
        }
        if ("ready" in message) ready.resolve(message.ready as Ready);
        else if ("news" in message) options.onNews?.(message.news);
        else if ("answer" in message) answers.shift()?.resolve(message.answer);
      }
      ended = new Error(`${options.what} has ended`);
    } catch (err) {
      ended = new Error(`Cannot read what ${options.what} says: ${err}`);
    }
    // Nothing more will come: whoever still waits is told so.
    ready.reject(new Error(`Cannot start ${options.what}: it exited before it was ready`));
    for (const answer of answers.splice(0)) answer.reject(ended);
  })();
  const writer = child.stdin.getWriter();
  const stop = async () => {
    await writer.close().catch(() => {});
    await child.status;
    await reading;
  };
  let readyWith: Ready;
  try {
    readyWith = await ready.promise;
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    pid: child.pid,
    ready: readyWith,
    async ask(command) {
      if (ended) throw ended;
      const answer = Promise.withResolvers<unknown>();
      answers.push(answer);
      try {
        await writer.write(new TextEncoder().encode(`${command}\n`));
      } catch (err) {
        answers.splice(answers.indexOf(answer), 1);
        throw err;
      }
      return await answer.promise;
    },
    stop,
  };
}

/** In the child: writes one message to the bench. */
export function tellBench(kind: "ready" | "news" | "answer", value: unknown): void {
  console.log(JSON.stringify({ [kind]: value ?? null }));
}

/** In the child: answers each command line the bench writes, until it closes standard input. */
export async function answerBench(answer: (command: string) => unknown): Promise<void> {
  for await (const line of lines(Deno.stdin.readable)) {
    tellBench("answer", answer(line.trim()));
  }
}
