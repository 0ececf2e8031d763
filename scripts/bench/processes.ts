/**
 * What the bench reads of a process from /proc (Linux): its CPU time and its
 * resident memory. Deno lets a script read /proc only with every permission,
 * so `cat` reads it.
 */

/** Clock ticks per second of /proc/<pid>/stat's times: 100 on Linux. */
const TICKS_PER_S = 100;

async function readProc(pid: number, file: string): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("cat", {
      args: [`/proc/${pid}/${file}`],
      stdout: "piped",
      stderr: "null",
    }).output();
    return out.success ? new TextDecoder().decode(out.stdout) : undefined;
  } catch {
    return undefined;
  }
}

/** CPU seconds a process has used so far, user and system; undefined without /proc. */
export async function cpuSeconds(pid: number): Promise<number | undefined> {
  const stat = await readProc(pid, "stat");
  if (stat === undefined) return undefined;
  // The fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_S;
}

/** A process's resident set size in MiB; undefined without /proc. */
export async function rssMiB(pid: number): Promise<number | undefined> {
  const kb = (await readProc(pid, "status"))?.match(/^VmRSS:\s+(\d+) kB/m)?.[1];
  return kb === undefined ? undefined : Number(kb) / 1024;
}

/** CPU seconds of each named process, to take a difference later. */
export async function cpuSnapshot(
  processes: Readonly<Record<string, number>>,
): Promise<Record<string, number>> {
  const entries = await Promise.all(
    Object.entries(processes).map(async ([name, pid]) => [name, await cpuSeconds(pid)] as const),
  );
  return Object.fromEntries(entries.filter(([, seconds]) => seconds !== undefined)) as Record<
    string,
    number
  >;
}

/** A process's resident memory split by kind, in MiB: what it allocated, and mapped files (its binary's code). */
export interface RssParts {
  rss: number;
  anon: number;
  file: number;
}

/** A process's resident memory and its parts; undefined without /proc. */
export async function rssParts(pid: number): Promise<RssParts | undefined> {
  const status = await readProc(pid, "status");
  const field = (name: string) => {
    const kb = status?.match(new RegExp(`^${name}:\\s+(\\d+) kB`, "m"))?.[1];
    return kb === undefined ? undefined : Number(kb) / 1024;
  };
  const [rss, anon, file] = [field("VmRSS"), field("RssAnon"), field("RssFile")];
  return rss === undefined ? undefined : { rss, anon: anon ?? 0, file: file ?? 0 };
}
