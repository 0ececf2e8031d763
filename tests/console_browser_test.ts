/**
 * The console in a real browser: headless Chromium opens the page against a
 * gateway on stand-ins, served on 127.0.0.1, at a phone's size. The gateway
 * has three backends: one with a live worker, one whose worker cannot reach
 * it, one with no worker. The page enters the key, sees each backend's
 * status, sends a chat and watches the reply stream in, sees a failed job and
 * retries it, and sees the status change by itself when a worker stops. Then
 * the same page on a gateway without keys. With CONSOLE_SCREENSHOT=<file.png>
 * set, it saves a screenshot of the page at a desktop's size on the way.
 */
import assert from "node:assert/strict";
import { backendTest } from "./support/gateway.ts";
import { type Page, skipWithoutBrowser, startBrowser } from "./support/browser.ts";
import type { RecordedRequest, StandInAnswer } from "./support/stand_in_llm.ts";

const NAME =
  "the console shows each backend's status and the jobs, streams a chat and retries a failed job";
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

/** The text of each element a selector finds. */
function texts(page: Page, selector: string): Promise<string[]> {
  return inPage(
    page,
    `[...document.querySelectorAll(${JSON.stringify(selector)})].map((e) => e.textContent)`,
  );
}

/** Serves a gateway's app on 127.0.0.1, as `deno task dev` does. */
function serve(app: { fetch: (request: Request) => Response | Promise<Response> }) {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, app.fetch);
  return { url: `http://127.0.0.1:${server.addr.port}/`, stop: () => server.shutdown() };
}

/** Sends the chat form and waits until the page says it is done or shows why not. */
async function sendChat(page: Page, message: string, conversation = ""): Promise<void> {
  // The state shown is cleared first: a tap's click can land after tap() returns, and the
  // wait below must not take the last chat's "done" for this one's.
  await inPage(
    page,
    `document.getElementById("conversation").value = ${JSON.stringify(conversation)};
     document.getElementById("message").value = ${JSON.stringify(message)};
     document.getElementById("chat-state").textContent = "";`,
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
      env: {
        GATEWAY_API_KEYS: USER_KEY,
        GATEWAY_ADMIN_KEYS: ADMIN_KEY,
        // A third backend that no worker serves.
        LLM_BACKENDS: "vllm,ollama,spare",
        LLM_SPARE_KIND: "openai",
        LLM_SPARE_MODEL: "spare-model",
      },
      vllmAnswer: (request: RecordedRequest): StandInAnswer => {
        const last = String(request.messages.at(-1)?.content ?? "");
        if (backend.broken && last.includes("doomed")) {
          return { status: 400, message: "model not loaded" };
        }
        // The long reply comes slowly enough to be seen in pieces even on a busy machine.
        return { reply: `vllm says: ${last}`, pauseMs: last === LONG_MESSAGE ? 50 : undefined };
      },
    });
    // One machine beside vLLM; another whose Ollama is not running: nothing listens on its port.
    const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const closedPort = closed.addr.port;
    closed.close();
    await gateway.startWorker({ env: { LLM_BACKENDS: "vllm" } });
    const ollamaWorker = await gateway.startWorker({
      env: { LLM_BACKENDS: "ollama", OLLAMA_BASE_URL: `http://127.0.0.1:${closedPort}/v1` },
    });
    const server = serve(gateway.app);
    const url = server.url;
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
      const card = (name: string) => `#backends article[data-backend="${name}"]`;

      await t.step("without a key the page asks for one and shows nothing else", async () => {
        await page.goto(url);
        await page.waitForSelector("#key-form:not([hidden])", WAIT);
        assert.equal(await inPage(page, `document.getElementById("console").hidden`), true);
        assert.equal((await page.$$("#backends article")).length, 0);
        await page.type("#key-input", "not-a-key");
        await page.tap("#key-form button[type=submit]");
        await until(page, `document.getElementById("key-error").textContent === "Invalid API key"`);
      });

      await t.step(
        "with the key it shows each backend: its state, queues, live workers and models",
        async () => {
          await page.type("#key-input", ADMIN_KEY);
          await page.tap("#key-form button[type=submit]");
          await page.waitForSelector(`${card("spare")}`, WAIT);
          assert.deepEqual(
            await inPage(
              page,
              `[...document.querySelectorAll("#backends article")].map((a) => a.dataset.backend)`,
            ),
            ["vllm", "ollama", "spare"],
          );
          assert.deepEqual(
            [
              await text(page, `${card("vllm")} h3 .badge`),
              await text(page, `${card("ollama")} h3 .badge`),
              await text(page, `${card("spare")} h3 .badge`),
            ],
            ["up", "down", "no worker"],
          );
          assert.equal(await text(page, "#status-summary"), "1 of 3 backends up");
          // Each backend's own queues, both lanes.
          assert.deepEqual(await texts(page, `${card("vllm")} tbody th`), ["priority", "default"]);
          assert.equal(await text(page, `${card("vllm")} tr[data-lane=default] .waiting`), "0");
          // The live worker, when it was last seen, and what it serves.
          const workers = await texts(page, `${card("vllm")} .workers li`);
          assert.equal(workers.length, 1);
          assert.match(workers[0], /^worker [0-9a-f]{8} · seen .+ ago$/);
          assert.equal(await text(page, `${card("vllm")} .models`), "Models: test-text-model");
          // Down, with the reason its worker gave.
          assert.match((await text(page, `${card("ollama")} .reason`)) ?? "", /ollama/i);
          assert.equal((await texts(page, `${card("ollama")} .workers li`)).length, 1);
          assert.equal(
            await text(page, `${card("spare")} .workers`),
            "No worker has been seen yet",
          );
          assert.equal(await inPage(page, "sessionStorage.length"), 1, "kept for the tab");
          const models = await inPage(
            page,
            `[...document.querySelectorAll("#model option")].map((o) => o.value)`,
          );
          assert.deepEqual(
            models,
            ["test-text-model"],
            "only what a live backend that is up serves",
          );
        },
      );

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

      await t.step("the usage chart shows each key by name, with the chat's tokens", async () => {
        await page.waitForSelector("#usage-chart rect.usage", WAIT);
        const names = await inPage<string[]>(
          page,
          `[...document.querySelectorAll("#usage-keys li")].map((li) => li.dataset.key)`,
        );
        assert.equal(names.length, 2, "an admin key sees both keys");
        assert.ok(names.every((name) => /^key-[0-9a-f]{8}$/.test(name)), names.join(", "));
        const legend = (await texts(page, "#usage-keys li")).join("\n");
        assert.match(legend, /1 job; \d+ prompt \+ \d+ completion tokens/);
        assert.ok(!legend.includes(ADMIN_KEY) && !legend.includes(USER_KEY), "names, not keys");
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
          // The status refreshes by itself: the message is in vllm's dead-letter queue now.
          await until(
            page,
            `document.querySelector('${card("vllm")} tr[data-lane=default] .dead')
               ?.textContent === "1"`,
          );
          assert.equal(await text(page, `${card("ollama")} tr[data-lane=default] .dead`), "0");
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

      const screenshot = Deno.env.get("CONSOLE_SCREENSHOT");
      if (screenshot && gateway.backend === "embedded") {
        // A desktop-sized tab of its own, with a reply on screen, a dead letter to retry, and
        // a backend in each state (before the down one's worker stops).
        const desk = await chromium.browser.newPage();
        await desk.setViewport({ width: 1280, height: 900 });
        await desk.goto(url);
        await desk.waitForSelector("#key-form:not([hidden])", WAIT);
        await desk.type("#key-input", ADMIN_KEY);
        await desk.click("#key-form button[type=submit]");
        await desk.waitForSelector("#backends article", WAIT);
        backend.broken = true;
        await sendChat(desk, "doomed: the model is not loaded yet");
        backend.broken = false;
        await sendChat(desk, "Hello from the console! How are you today?", "demo");
        await desk.waitForSelector("#dead-list li", WAIT);
        await desk.waitForSelector("#chart rect.bar", WAIT);
        // Both failed jobs' messages: the retried one's old letter, and this one.
        await until(
          desk,
          `document.querySelector('${card("vllm")} tr[data-lane=default] .dead')
             ?.textContent === "2"`,
        );
        await desk.waitForNetworkIdle({ idleTime: 500, timeout: 30_000 });
        await desk.screenshot({ path: screenshot as `${string}.png`, fullPage: true });
        // The phone's tab again in front: a hidden tab runs no animation frames, which waits poll on.
        await desk.close();
        await page.bringToFront();
      }

      await t.step("a worker that stops leaves its backend with no worker, by itself", async () => {
        await ollamaWorker.stop();
        await until(
          page,
          `document.querySelector('${card("ollama")} h3 .badge')?.textContent === "no worker"`,
        );
        assert.match(
          (await text(page, `${card("ollama")} .workers`)) ?? "",
          /^No live worker; one was last seen .+ ago$/,
        );
        assert.equal(await text(page, `${card("vllm")} h3 .badge`), "up");
      });

      await t.step("the page fits a phone's width and broke no rule of its own", async () => {
        const overflow = await inPage<number>(
          page,
          "document.documentElement.scrollWidth - innerWidth",
        );
        assert.ok(overflow <= 0, `the page is ${overflow} px wider than the phone`);
        assert.deepEqual(problems, []);
      });

      await t.step(
        "on a gateway without keys the page opens at once and chats through the local guard",
        async () => {
          const open = await start({
            // No API keys, but an admin key for retrying.
            env: { GATEWAY_ADMIN_KEYS: ADMIN_KEY },
            vllmAnswer: (r: RecordedRequest) => ({
              reply: `open says: ${r.messages.at(-1)?.content}`,
            }),
          });
          await open.startWorker();
          const local = serve(open.app);
          const tab = await chromium.browser.newPage();
          tab.on("pageerror", (err) => problems.push(`page error: ${(err as Error).message}`));
          try {
            await tab.goto(local.url);
            await tab.waitForSelector(`${card("vllm")} .workers li`, WAIT);
            assert.equal(await inPage(tab, `document.getElementById("key-form").hidden`), true);
            assert.equal(await inPage(tab, `document.getElementById("sign-out").hidden`), true);
            await sendChat(tab, "hello without keys");
            assert.equal(await text(tab, "#chat-state"), "done");
            assert.equal(await text(tab, "#reply"), "open says: hello without keys");
            // A redrive needs the admin key: the page asks for it, then redrives with it.
            await tab.tap("#retry-all");
            await tab.waitForSelector("#key-form:not([hidden])", WAIT);
            await tab.type("#key-input", ADMIN_KEY);
            await tab.tap("#key-form button[type=submit]");
            await tab.waitForSelector("#console:not([hidden])", WAIT);
            await tab.tap("#retry-all");
            await until(tab, `document.getElementById("dead-result").textContent !== ""`);
            assert.equal(await text(tab, "#dead-result"), "No dead letters to move.");
            assert.deepEqual(problems, []);
          } finally {
            await tab.close();
            await local.stop();
          }
        },
      );
    } finally {
      await chromium.close();
      await server.stop();
    }
  });
}
