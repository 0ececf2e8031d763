/**
 * The console's "Try a chat" with an embedding model, in headless Chromium:
 * the model list marks embedding models, picking one turns the form into an
 * embedding form, and sending shows the vector's length. The page only talks
 * HTTP to the front door, so this runs on the embedded store alone; the
 * storage behind `/v1/embeddings` is tested on both in embeddings_test.ts.
 */
import assert from "node:assert/strict";
import { EMBEDDING_MODELS } from "./support/embedding_models.ts";
import { startTestGateway } from "./support/gateway.ts";
import { type Page, skipWithoutBrowser, startBrowser } from "./support/browser.ts";

const NAME = "the console embeds a message with an embedding model and shows the vector's length";
const WAIT = { timeout: 30_000 };

function inPage<T>(page: Page, script: string): Promise<T> {
  return page.evaluate(script) as Promise<T>;
}

function text(page: Page, selector: string): Promise<string | null> {
  return inPage(page, `document.querySelector(${JSON.stringify(selector)})?.textContent ?? null`);
}

/** Picks a model, sends a message and waits until the page says it is done or why not. */
async function send(page: Page, model: string, message: string): Promise<void> {
  // As picking it does: the value, then the change event the page listens to.
  await inPage(
    page,
    `{
       const select = document.getElementById("model");
       select.value = ${JSON.stringify(model)};
       select.dispatchEvent(new Event("change"));
       document.getElementById("message").value = ${JSON.stringify(message)};
     }`,
  );
  await page.tap("#send");
  await page.waitForFunction(
    `!document.getElementById("send").disabled &&
     !["", "waiting for the worker…", "streaming…"].includes(
       document.getElementById("chat-state").textContent)`,
    WAIT,
  );
}

Deno.test({
  name: NAME,
  ignore: skipWithoutBrowser(),
  async fn(t) {
    const gateway = await startTestGateway("embedded", EMBEDDING_MODELS);
    await gateway.startWorker();
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      gateway.app.fetch,
    );
    const chromium = await startBrowser();
    try {
      const page = await chromium.browser.newPage();
      await page.setViewport({ width: 390, height: 844, isMobile: true, hasTouch: true });
      const problems: string[] = [];
      page.on("pageerror", (err) => problems.push(`page error: ${(err as Error).message}`));
      page.on("console", (message) => {
        if (message.type() === "error") problems.push(`console: ${message.text()}`);
      });

      await t.step("the model list marks the embedding models", async () => {
        await page.goto(`http://127.0.0.1:${server.addr.port}/`);
        await page.waitForSelector('#model option[value="nomic-embed-text:latest"]', WAIT);
        assert.deepEqual(
          await inPage(
            page,
            `[...document.querySelectorAll("#model option")].map((o) => [o.textContent, o.dataset.kind])`,
          ),
          [
            ["test-text-model (vllm)", "chat"],
            ["test-embed-vllm (vllm, embedding)", "embedding"],
            ["test-vision-model (ollama)", "chat"],
            ["nomic-embed-text:latest (ollama, embedding)", "embedding"],
          ],
        );
        assert.equal(await text(page, "#send"), "Send");
      });

      await t.step("an embedding model's message comes back as a vector's length", async () => {
        await send(page, "nomic-embed-text:latest", "embed this sentence");
        assert.equal(await text(page, "#chat-state"), "done");
        assert.match(
          (await text(page, "#reply")) ?? "",
          /^A vector of 8 numbers: \[(-?\d\.\d{4}, ){7}-?\d\.\d{4}\] \(3 tokens\)$/,
        );
        assert.equal(await text(page, "#send"), "Embed");
        assert.equal(
          await inPage(page, `document.getElementById("image-url").disabled`),
          true,
          "an embedding model takes text alone",
        );
        await send(page, "test-embed-vllm", "and this one");
        assert.match((await text(page, "#reply")) ?? "", /^A vector of 256 numbers: \[.*, …\]/);
        assert.equal(gateway.vllm.embeddingRequests.at(-1)?.input, "and this one");
      });

      await t.step("a chat model chats again", async () => {
        await send(page, "test-text-model", "hello again");
        assert.equal(await text(page, "#send"), "Send");
        assert.equal(await text(page, "#chat-state"), "done");
        assert.equal(await text(page, "#reply"), "vllm says: hello again");
        assert.deepEqual(problems, []);
      });
    } finally {
      await chromium.close();
      await server.shutdown();
      await gateway.stop();
    }
  },
});
