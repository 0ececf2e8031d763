/** Headless Chromium for the console's tests, driven by puppeteer-core; started and stopped by the test. */
// @ts-types="./puppeteer.d.ts"
import puppeteer, { type Browser, type Page } from "puppeteer-core";

export type { Page };

/** Debian's package, which `.ci/run` installs. */
export const CHROMIUM = "/usr/bin/chromium";

/** Why no browser can run here, or undefined when one can. */
export function browserUnavailable(): string | undefined {
  try {
    const { success } = new Deno.Command(CHROMIUM, {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).outputSync();
    return success ? undefined : `${CHROMIUM} --version failed`;
  } catch (err) {
    return `${CHROMIUM} cannot run (${(err as Error).message})`;
  }
}

/**
 * Whether the browser tests should be ignored: only when no browser can run
 * and we are not in CI, where that is a failure, loudly.
 */
export function skipWithoutBrowser(): boolean {
  const reason = browserUnavailable();
  if (!reason) return false;
  if (Deno.env.get("CI")) throw new Error(`Cannot run the browser tests in CI: ${reason}`);
  console.warn(
    `\n!!! SKIPPING the browser tests: ${reason}.\n` +
      "!!! Install Chromium (`apt-get install chromium`) to run them.\n",
  );
  return true;
}

/** A running browser with a profile of its own. */
export interface TestBrowser {
  browser: Browser;
  close(): Promise<void>;
}

/** Starts headless Chromium on a fresh profile, with nothing that reaches outside the machine. */
export async function startBrowser(): Promise<TestBrowser> {
  const profile = await Deno.makeTempDir({ prefix: "chromium-profile-" });
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--headless",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      `--user-data-dir=${profile}`,
    ],
  }).catch(async (err) => {
    await Deno.remove(profile, { recursive: true });
    throw err;
  });
  return {
    browser,
    async close() {
      await browser.close();
      await Deno.remove(profile, { recursive: true });
    },
  };
}
