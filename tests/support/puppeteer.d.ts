/**
 * The part of puppeteer-core's API the console's tests use. Its own types
 * pull in the DOM's, which clash with Deno's stream types across the whole
 * type check, so tests/support/browser.ts imports it with these instead.
 */

export interface Viewport {
  width: number;
  height: number;
  isMobile?: boolean;
  hasTouch?: boolean;
}

export interface WaitOptions {
  timeout?: number;
}

/** An element handle; the tests only check that one exists. */
export interface ElementHandle {
  dispose(): Promise<void>;
}

export interface ConsoleMessage {
  type(): string;
  text(): string;
}

export interface Page {
  goto(url: string): Promise<unknown>;
  setViewport(viewport: Viewport): Promise<void>;
  on(event: "pageerror", handler: (error: unknown) => void): this;
  on(event: "console", handler: (message: ConsoleMessage) => void): this;
  type(selector: string, text: string): Promise<void>;
  click(selector: string): Promise<void>;
  /** A touch on the element, as a phone's finger. */
  tap(selector: string): Promise<void>;
  waitForSelector(selector: string, options?: WaitOptions): Promise<ElementHandle | null>;
  /** Waits until the script, run in the page, is truthy. */
  waitForFunction(script: string, options?: WaitOptions): Promise<unknown>;
  /** Runs the script in the page and returns its value. */
  evaluate(script: string): Promise<unknown>;
  $(selector: string): Promise<ElementHandle | null>;
  $$(selector: string): Promise<ElementHandle[]>;
  /** Waits until no request has been in flight for `idleTime` ms. */
  waitForNetworkIdle(options?: { idleTime?: number; timeout?: number }): Promise<void>;
  screenshot(options: { path: `${string}.png`; fullPage?: boolean }): Promise<unknown>;
  close(): Promise<void>;
  /** Makes this the tab in front, as a user switching to it. */
  bringToFront(): Promise<void>;
}

export interface Browser {
  newPage(): Promise<Page>;
  close(): Promise<void>;
}

export interface LaunchOptions {
  executablePath: string;
  args?: string[];
}

declare const puppeteer: { launch(options: LaunchOptions): Promise<Browser> };
export default puppeteer;
