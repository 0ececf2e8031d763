/**
 * One client cannot hold every worker place: callbacks are delivered outside
 * the job's place, images are fetched outside it, a key's fetches at once are
 * bounded, and images are bounded per job.
 */
import assert from "node:assert/strict";
import { createLogger } from "../lib/core/log.ts";
import type { ChatAccepted } from "../lib/http/submit.ts";
import { backendTest, type TestGateway } from "./support/gateway.ts";
import { PNG, pngDataUrl, startImageServer } from "./support/image_server.ts";
import { eventually } from "./support/wait.ts";

/** A callback receiver on loopback that holds every request until released. */
function startHoldingReceiver() {
  const release = Promise.withResolvers<void>();
  let received = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    received++;
    await req.body?.cancel();
    await release.promise;
    return new Response("thanks");
  });
  return {
    host: `127.0.0.1:${server.addr.port}`,
    received: () => received,
    release: () => release.resolve(),
    async stop() {
      release.resolve();
      await server.shutdown();
    },
  };
}

backendTest(
  "callbacks that never answer hold no backend place: other jobs run while they wait",
  async (t, start) => {
    const receiver = startHoldingReceiver();
    try {
      // One vLLM place: the worker holds at most two of its jobs at once.
      const gateway = await start({
        env: { VLLM_CONCURRENCY: "1", CALLBACK_ALLOWED_HOSTS: receiver.host },
      });
      const lines: string[] = [];
      const worker = await gateway.startWorker({
        logger: createLogger({ write: (line) => lines.push(line) }),
      });
      const callbackEnded = () => lines.filter((l) => /"Callback (not )?delivered"/.test(l)).length;

      await t.step("two jobs whose receiver holds their callbacks", async () => {
        for (const id of ["hold-1", "hold-2"]) {
          await gateway.send({
            conversation_id: id,
            user_message: id,
            callback_url: `http://${receiver.host}/hook`,
          });
        }
        await eventually(() => receiver.received() >= 2, "both callbacks to arrive");
      });

      await t.step("a third job runs while both deliveries are still waiting", async () => {
        const { job_id } = await gateway.send({ conversation_id: "other", user_message: "Hi" });
        const job = await gateway.waitForJob(job_id);
        assert.equal(job.status, "succeeded");
        assert.equal(callbackEnded(), 0, "no delivery had ended yet:\n" + lines.join("\n"));
      });

      await t.step("released, both callbacks are delivered; stopping waits for them", async () => {
        const stopped = worker.stop();
        receiver.release();
        await stopped;
        assert.equal(
          lines.filter((l) => l.includes('"Callback delivered"')).length,
          2,
          lines.join("\n"),
        );
      });
    } finally {
      await receiver.stop();
    }
  },
);

/** An image host on loopback that holds every request until released, then answers each with a PNG. */
function startHeldImageHost() {
  const release = Promise.withResolvers<void>();
  let open = 0;
  let mostOpen = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async () => {
    open++;
    mostOpen = Math.max(mostOpen, open);
    try {
      await release.promise;
      return new Response(PNG.slice(), { headers: { "content-type": "image/png" } });
    } finally {
      open--;
    }
  });
  const host = `127.0.0.1:${server.addr.port}`;
  return {
    host,
    url: (name: string) => `http://${host}/${name}.png`,
    /** Requests being held now. */
    open: () => open,
    /** The most requests held at once so far. */
    mostOpen: () => mostOpen,
    release: () => release.resolve(),
    async stop() {
      release.resolve();
      await server.shutdown();
    },
  };
}

/** POSTs a chat with a bearer key, which must be accepted. */
async function sendAs(
  gateway: TestGateway,
  key: string,
  body: Record<string, unknown>,
): Promise<ChatAccepted> {
  const res = await gateway.app.request("/chat", {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify(body),
  });
  assert.equal(res.status, 202, await res.clone().text());
  return await res.json();
}

backendTest(
  "jobs fetching images hold no backend place: another key's text job runs while they wait, and a key's fetches at once are bounded",
  async (t, start) => {
    const images = startHeldImageHost();
    try {
      // One Ollama place: before, two jobs held by their images filled everything the worker gave Ollama.
      const gateway = await start({
        env: {
          GATEWAY_API_KEYS: "key-a,key-b",
          OLLAMA_CONCURRENCY: "1",
          IMAGE_ALLOWED_HOSTS: images.host,
          IMAGE_FETCHES_PER_KEY: "3",
          IMAGE_TIMEOUT_S: "300",
        },
      });
      await gateway.startWorker();
      const pictures: ChatAccepted[] = [];
      const unfinished = async () => {
        const jobs = await Promise.all(
          pictures.map((p) => gateway.services.store.getJob(p.job_id)),
        );
        return jobs.filter((j) => j?.status !== "succeeded" && j?.status !== "failed").length;
      };

      await t.step(
        "one key's four jobs, two images each, on a host that does not answer",
        async () => {
          for (let i = 0; i < 4; i++) {
            pictures.push(
              await sendAs(gateway, "key-a", {
                conversation_id: `pictures-${i}`,
                user_message: "What is this?",
                model: "test-vision-model",
                images: [{ image_url: images.url(`a${i}`) }, { image_url: images.url(`b${i}`) }],
              }),
            );
          }
          await eventually(
            () => images.open() === 3,
            "the key's three fetches at once to reach the host" + gateway.recentLogs(),
          );
        },
      );

      await t.step("another key's text job on the same backend runs meanwhile", async () => {
        const text = await sendAs(gateway, "key-b", {
          conversation_id: "words",
          user_message: "Hello",
          model: "test-vision-model",
        });
        assert.equal(text.route, "ollama");
        const job = await gateway.waitForJob(text.job_id, 60_000);
        assert.equal(job.status, "succeeded", job.error);
        assert.equal(job.reply, "ollama says: Hello");
        assert.equal(await unfinished(), 4, "the image jobs were all still fetching");
        assert.equal(images.open(), 3, "still three fetches held at the host");
        assert.equal(images.mostOpen(), 3, "never more than the key's three at once");
      });

      await t.step(
        "once the host answers, every image job gets its images and succeeds",
        async () => {
          images.release();
          for (const picture of pictures) {
            const job = await gateway.waitForJob(picture.job_id);
            assert.equal(job.status, "succeeded", job.error);
          }
          const sent = gateway.ollama.requests.filter((r) =>
            JSON.stringify(r).includes(pngDataUrl())
          );
          assert.equal(sent.length, 4, "each went to Ollama with its images inlined");
          assert.ok(images.mostOpen() <= 3, `at most three at once, saw ${images.mostOpen()}`);
        },
      );
    } finally {
      await images.stop();
    }
  },
);

backendTest(
  "an image earlier in a conversation is fetched once, not again on every turn",
  async (t, start) => {
    const images = startImageServer();
    try {
      const gateway = await start({ env: { IMAGE_ALLOWED_HOSTS: images.host } });
      await gateway.startWorker();
      const ask = async (messages: unknown[]) => {
        const res = await gateway.app.request("/v1/chat/completions", {
          method: "POST",
          headers: { "content-type": "application/json", "x-conversation-id": "pictures" },
          body: JSON.stringify({ model: "test-vision-model", messages }),
        });
        assert.equal(res.status, 200, await res.clone().text());
        return await res.json();
      };
      const first = {
        role: "user",
        content: [{ type: "text", text: "What is this?" }, {
          type: "image_url",
          image_url: { url: images.pngUrl },
        }],
      };

      await t.step("the first turn fetches the image", async () => {
        await ask([first]);
        assert.equal(images.hits.get("/cat.png"), 1);
      });

      await t.step("the next turn sends it to the model again without fetching it", async () => {
        await ask([first, { role: "assistant", content: "A cat." }, {
          role: "user",
          content: "What colour is it?",
        }]);
        assert.equal(images.hits.get("/cat.png"), 1);
        const sent = JSON.stringify(gateway.ollama.requests.at(-1)?.messages);
        assert.ok(sent.includes(pngDataUrl()), sent);
      });

      await t.step("a request with more images than allowed is refused at once", async () => {
        const nine = Array.from({ length: 9 }, () => ({
          type: "image_url",
          image_url: { url: images.pngUrl },
        }));
        const res = await gateway.app.request("/v1/chat/completions", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ messages: [{ role: "user", content: nine }] }),
        });
        assert.equal(res.status, 400);
        assert.match(await res.text(), /must hold at most 8 images, got 9/);
        assert.equal(images.hits.get("/cat.png"), 1);
      });
    } finally {
      await images.stop();
    }
  },
);
