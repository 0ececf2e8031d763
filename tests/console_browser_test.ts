/**
 * The console in a real browser: headless Chromium opens the page against a
 * gateway on stand-ins, served on 127.0.0.1, at a phone's size. It enters
 * the key, sees the status, sends a chat and watches the reply stream in,
 * sees a failed job and retries it. With CONSOLE_SCREENSHOT=<file.png> set,
 * it saves a screenshot of the page at a desktop's size at the end.
 */
import assert from "node:assert/strict";
import { backendTest } from "./support/gateway.ts";
import { type Page, skipWithoutBrowser, startBrowser } from "./support/browser.ts";
import type { RecordedRequest, StandInAnswer } from "./support/stand_in_llm.ts";

const NAME = "the console shows status and jobs, streams a chat and retries a failed job";
const USER_KEY = "console-user-key";
const ADMIN_KEY = "console-admin-key";
/** Long enough for the reply to arrive in several pieces. */
const LONG_MESSAGE = Array.from({ length: 40 }, (_, i) => `word${i}`).join(" ");
const WAIT = { timeout: 30_000 };

/** Runs a script in the page and returns its value. */
function inPage<T>(page: Page, script: string): Promise<T> {
  return page.evaluate(script) as Promise<T>;
}

/** Waits until a script holds in the page. */
async function until(page: Page, script: string): Promise<void> {
  await page.waitForFunction(script, WAIT);
}

/** The text of the first element a selector finds, or null when there is none. */
function text(page: Page, selector: string): Promise<string | null> {
  return inPage(page, `document.querySelector(${JSON.stringify(selector)})?.textContent ?? null`);
}

/** Sends the chat form and waits until the page says it is done or shows why not. */
async function sendChat(page: Page, message: string, conversation = ""): Promise<void> {
  await inPage(
    page,
    `document.getElementById("conversation").value = ${JSON.stringify(conversation)};
     document.getElementById("message").value = ${JSON.stringify(message)};`,
  );
  await page.tap("#send");
  await until(
    page,
    `!document.getElementById("send").disabled &&
     !["", "waiting for the worker…", "streaming…"].includes(
       document.getElementById("chat-state").textContent)`,
  );
}

if (skipWithoutBrowser()) {
  Deno.test({ name: NAME, ignore: true, fn() {} });
} else {
  backendTest(NAME, async (t, start) => {
    const backend = { broken: true };
    const gateway = await start({
      env: { GATEWAY_API_KEYS: USER_KEY, GATEWAY_ADMIN_KEYS: ADMIN_KEY },
      vllmAnswer: (request: RecordedRequest): StandInAnswer => {
        const last = String(request.messages.at(-1)?.content ?? "");
        return backend.broken && last.includes("doomed")
          ? { status: 400, message: "model not loaded" }
          : { reply: `vllm says: ${last}` };
      },
    });
    await gateway.startWorker();
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, gateway.app.fetch);
    const url = `http://127.0.0.1:${server.addr.port}/`;
    const chromium = await startBrowser();
    try {
      const page = await chromium.browser.newPage();
      await page.setViewport({ width: 390, height: 844, isMobile: true, hasTouch: true });
      const problems: string[] = [];
      page.on("pageerror", (err) => problems.push(`page error: ${(err as Error).message}`));
      page.on("console", (message) => {
        // A refused key is a 401, which Chromium reports; anything else is a fault.
        if (message.type() === "error" && !/status of 401/.test(message.text())) {
          problems.push(`console: ${message.text()}`);
        }
      });

      await t.step("without a key the page asks for one and shows nothing else", async () => {
        await page.goto(url);
        await page.waitForSelector("#key-form:not([hidden])", WAIT);
        assert.equal(await inPage(page, `document.getElementById("console").hidden`), true);
        assert.equal((await page.$$("#queues tbody tr")).length, 0);
        await page.type("#key-input", "not-a-key");
        await page.tap("#key-form button[type=submit]");
        await until(page, `document.getElementById("key-error").textContent === "Invalid API key"`);
      });

      await t.step("with the key it shows the queues and a live worker", async () => {
        await page.type("#key-input", ADMIN_KEY);
        await page.tap("#key-form button[type=submit]");
        await page.waitForSelector("#queues tbody tr[data-queue=default]", WAIT);
        await until(page, `document.getElementById("worker-state").textContent === "worker alive"`);
        assert.equal(await text(page, "#queues tr[data-queue=default] .waiting"), "0");
        assert.equal(await inPage(page, "sessionStorage.length"), 1, "kept for the tab");
        const models = await inPage(
          page,
          `[...document.querySelectorAll("#model option")].map((o) => o.value)`,
        );
        assert.deepEqual(models, ["test-text-model", "test-vision-model"]);
      });

      await t.step("a chat's reply streams in piece by piece", async () => {
        await inPage(
          page,
          `const reply = document.getElementById("reply");
           globalThis.replyStates = new Set();
           new MutationObserver(() => globalThis.replyStates.add(reply.textContent.length))
             .observe(reply, { childList: true, characterData: true, subtree: true });`,
        );
        await sendChat(page, LONG_MESSAGE);
        assert.equal(await text(page, "#chat-state"), "done");
        assert.equal(await text(page, "#reply"), `vllm says: ${LONG_MESSAGE}`);
        const lengths = await inPage<number>(page, "globalThis.replyStates.size");
        assert.ok(lengths >= 3, `the reply arrived in ${lengths} states`);
      });

      await t.step("a conversation id keeps the history, and the page reads it back", async () => {
        await sendChat(page, "remember me", "browser-chat");
        await page.waitForSelector("#transcript:not([hidden]) li", WAIT);
        assert.deepEqual(
          await inPage(
            page,
            `[...document.querySelectorAll("#transcript li")].map((li) => li.textContent)`,
          ),
          ["userremember me", "assistantvllm says: remember me"],
        );
      });

      let failedJob = "";
      await t.step(
        "a failed job shows with its reason in the jobs and the dead letters",
        async () => {
          await sendChat(page, "doomed question", "browser-doomed");
          // The backend's own words go to the worker's log only; the client learns who refused.
          assert.match((await text(page, "#chat-state")) ?? "", /Backend "vllm" answered 400/);
          await page.waitForSelector("#dead-list li[data-job]", WAIT);
          failedJob = await inPage(
            page,
            `document.querySelector("#dead-list li").getAttribute("data-job")`,
          );
          assert.match(
            (await text(page, "#dead-list li .error-text")) ?? "",
            /Backend "vllm" answered 400/,
          );
          await page.waitForSelector(`#job-table tr[data-job="${failedJob}"] .badge.failed`, WAIT);
          assert.ok(
            (await page.$$("#chart rect.bar")).length > 0,
            "the chart has a bar for this minute",
          );
        },
      );

      await t.step("retrying it runs it again, and it succeeds", async () => {
        backend.broken = false;
        // A click lands where the button is: wait until refreshes have moved it for the last time.
        await page.waitForNetworkIdle({ idleTime: 300, timeout: 30_000 });
        await page.tap(`#dead-list li[data-job="${failedJob}"] button`);
        await until(page, `document.getElementById("dead-result").textContent !== ""`);
        assert.equal(await text(page, "#dead-result"), `Job ${failedJob}: sent back to run`);
        await page.waitForSelector(`#job-table tr[data-job="${failedJob}"] .badge.succeeded`, WAIT);
        assert.equal(await page.$(`#dead-list li[data-job="${failedJob}"]`), null);
        assert.deepEqual(
          (await gateway.storedMessages(
            (await gateway.services.store.getJob(failedJob))!.conversation_id,
          )).map((m) => m.content),
          ["doomed question", "vllm says: doomed question"],
        );
      });

      await t.step("the page fits a phone's width and broke no rule of its own", async () => {
        const overflow = await inPage<number>(
          page,
          "document.documentElement.scrollWidth - innerWidth",
        );
        assert.ok(overflow <= 0, `the page is ${overflow} px wider than the phone`);
        assert.deepEqual(problems, []);
      });

      const screenshot = Deno.env.get("CONSOLE_SCREENSHOT");
      if (screenshot && gateway.backend === "embedded") {
        // A desktop-sized tab of its own, with a reply on screen and a dead letter to retry.
        const desk = await chromium.browser.newPage();
        await desk.setViewport({ width: 1280, height: 900 });
        await desk.goto(url);
        await desk.waitForSelector("#key-form:not([hidden])", WAIT);
        await desk.type("#key-input", ADMIN_KEY);
        await desk.click("#key-form button[type=submit]");
        await desk.waitForSelector("#queues tbody tr", WAIT);
        backend.broken = true;
        await sendChat(desk, "doomed: the model is not loaded yet");
        backend.broken = false;
        await sendChat(desk, "Hello from the console! How are you today?", "demo");
        await desk.waitForSelector("#dead-list li", WAIT);
        await desk.waitForSelector("#chart rect.bar", WAIT);
        await desk.waitForNetworkIdle({ idleTime: 500, timeout: 30_000 });
        await desk.screenshot({ path: screenshot as `${string}.png`, fullPage: true });
      }
    } finally {
      await chromium.close();
      await server.shutdown();
    }
  });
}
