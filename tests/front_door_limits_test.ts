import assert from "node:assert/strict";
import type { ErrorBody } from "../lib/http/errors.ts";
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import { createAwsClients } from "../lib/storage/aws/clients.ts";
import { BLOB_PREFIX } from "../lib/storage/aws/s3_blobs.ts";
import { backendTest, type TestGateway } from "./support/gateway.ts";
import { eventually } from "./support/wait.ts";
import { blobRef, dataUrlOf } from "../lib/core/blobs.ts";
import { PNG, pngDataUrl } from "./support/image_server.ts";

async function nothingNewQueued(gateway: TestGateway, jobsBefore: number) {
  assert.equal((await gateway.jobRecords()).length, jobsBefore, "no job record was written");
  assert.equal((await gateway.depth("default")).waiting, 0, "nothing was queued");
}

backendTest("oversized input is refused with 413 and nothing is enqueued", async (t, start) => {
  const gateway = await start({ env: { MAX_MESSAGE_BYTES: "1000", MAX_BODY_BYTES: "4096" } });

  await t.step("a message over MAX_MESSAGE_BYTES", async () => {
    const res = await gateway.postChat({ conversation_id: "big", user_message: "x".repeat(1200) });
    assert.equal(res.status, 413);
    const { error } = await res.json() as ErrorBody;
    assert.equal(error.code, "message_too_large");
    assert.equal(error.param, "user_message");
    assert.match(error.message, /over MAX_MESSAGE_BYTES \(1000\)/);
    await nothingNewQueued(gateway, 0);
  });

  await t.step("image URLs count towards the message's size", async () => {
    const images = Array.from(
      { length: 5 },
      (_, i) => ({ image_url: `https://example.com/${"a".repeat(200)}/${i}.png` }),
    );
    const res = await gateway.postChat({ conversation_id: "big", user_message: "look", images });
    assert.equal(res.status, 413);
    await nothingNewQueued(gateway, 0);
  });

  await t.step("a body over MAX_BODY_BYTES", async () => {
    const res = await gateway.postChat(
      JSON.stringify({ conversation_id: "big", user_message: "y".repeat(5000) }),
    );
    assert.equal(res.status, 413);
    const { error } = await res.json() as ErrorBody;
    assert.equal(error.code, "body_too_large");
    await nothingNewQueued(gateway, 0);
  });
});

backendTest(
  "a conversation that would outgrow CONVERSATION_MAX_BYTES refuses new messages",
  async (_t, start) => {
    const gateway = await start({ env: { CONVERSATION_MAX_BYTES: "1024" } });
    await gateway.startWorker();
    const first = await gateway.postChat({
      conversation_id: "full",
      user_message: "a".repeat(400),
    });
    assert.equal(first.status, 202);
    assert.equal((await gateway.waitForJob((await first.json()).job_id)).status, "succeeded");

    const res = await gateway.postChat({ conversation_id: "full", user_message: "b".repeat(400) });
    assert.equal(res.status, 413);
    const { error } = await res.json() as ErrorBody;
    assert.equal(error.code, "conversation_full");
    assert.equal(error.param, "conversation_id");
    assert.match(error.message, /start a new conversation_id/);
    assert.equal((await gateway.jobRecords()).length, 1, "no job record was written");
    assert.equal((await gateway.services.store.getConversation("full"))?.messages.length, 2);

    // An image sent inline goes to the blob store only with a job that is accepted.
    const withImage = await gateway.postChat({
      conversation_id: "full",
      user_message: "b".repeat(400),
      images: [{ image_url: pngDataUrl() }],
    });
    assert.equal(withImage.status, 413);
    assert.equal((await withImage.json() as ErrorBody).error.code, "conversation_full");
    const ref = await blobRef(undefined, PNG, "image/png");
    assert.equal(await gateway.services.blobs.get(ref), undefined, "no blob was written");
    assert.equal((await gateway.jobRecords()).length, 1, "no job record was written");
  },
);

backendTest(
  "with no worker seen for WORKER_STALE_S, POST /chat answers 503 instead of queueing",
  async (t, start) => {
    const gateway = await start({ env: { WORKER_STALE_S: "60" } });

    await t.step("before any worker has run", async () => {
      const res = await gateway.postChat({ conversation_id: "c", user_message: "anyone there?" });
      assert.equal(res.status, 503);
      const { error } = await res.json() as ErrorBody;
      assert.equal(error.code, "no_worker");
      assert.match(error.message, /start `deno task worker`/);
      assert.deepEqual(await gateway.jobRecords(), []);
      const health = await (await gateway.app.request("/healthz")).json();
      assert.equal(health.worker.stale, true);
      assert.equal(health.worker.last_seen, null);
    });

    await t.step(
      "once a worker has been seen, messages are accepted and /healthz says when",
      async () => {
        await gateway.startWorker();
        const res = await gateway.postChat({ conversation_id: "c", user_message: "hello" });
        assert.equal(res.status, 202);
        const health = await (await gateway.app.request("/healthz")).json();
        assert.equal(health.worker.stale, false);
        assert.ok(health.worker.seconds_ago <= 60, JSON.stringify(health));
        assert.equal(typeof health.worker.last_seen, "string");
      },
    );
  },
);

backendTest("/healthz counts waiting, in-flight and dead messages per lane", async (_t, start) => {
  const gateway = await start();
  for (const text of ["a", "b"]) {
    await gateway.postChat({ conversation_id: text, user_message: text });
  }
  await gateway.postChat({ conversation_id: "p", user_message: "urgent", priority: "high" });
  const expected = {
    priority: { waiting: 1, in_flight: 0, dead: 0 },
    default: { waiting: 2, in_flight: 0, dead: 0 },
  };
  // SQS's counts are approximate and lag the sends on AWS (Moto's are exact
  // at once), so the answer is awaited rather than read once.
  let health: { status: string; queues: unknown } | undefined;
  await eventually(async () => {
    health = await (await gateway.app.request("/healthz")).json();
    return JSON.stringify(health!.queues) === JSON.stringify(expected);
  }, "/healthz to count the three messages");
  assert.equal(health!.status, "ok");
  assert.deepEqual(health!.queues, expected);
});

/** A base64 image data URL of `bytes` random bytes (the front door does not look inside). */
function randomImage(bytes: number): string {
  const data = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i += 65_536) crypto.getRandomValues(data.subarray(i, i + 65_536));
  return dataUrlOf({ bytes: data, contentType: "image/png" });
}

/**
 * The blobs a gateway keeps, by their path under its blob folder or prefix:
 * the files under DATA_DIR/blobs, or the bucket's keys under `blobs/`.
 */
async function blobFiles(gateway: TestGateway): Promise<string[]> {
  if (gateway.backend === "aws") {
    const clients = createAwsClients(gateway.config);
    try {
      const out = await (await clients.s3()).send(
        new ListObjectsV2Command({ Bucket: gateway.config.blobBucket, Prefix: BLOB_PREFIX }),
      );
      return (out.Contents ?? []).map((o) => o.Key!.slice(BLOB_PREFIX.length)).sort();
    } finally {
      clients.destroy();
    }
  }
  const dataDir = gateway.config.dataDir;
  const files: string[] = [];
  const walk = async (dir: string) => {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isDirectory) await walk(`${dir}/${entry.name}`);
      else files.push(`${dir}/${entry.name}`.slice(`${dataDir}/blobs/`.length));
    }
  };
  await walk(`${dataDir}/blobs`).catch(() => {});
  return files.sort();
}

backendTest(
  "a key whose blobs would pass BLOB_KEY_MAX_BYTES gets a 429 naming it, and nothing is written",
  async (t, start) => {
    const gateway = await start({
      env: { GATEWAY_API_KEYS: "k-1,k-2", BLOB_KEY_MAX_BYTES: "1048576" },
    });
    const chat = (key: string, id: string, image: string) =>
      gateway.app.request("/chat", {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({
          conversation_id: id,
          user_message: "look",
          images: [{ image_url: image }],
        }),
      });
    const first = randomImage(700_000);
    const second = randomImage(700_000);
    await t.step("a first image fits", async () => {
      assert.equal((await chat("k-1", "a", first)).status, 202);
    });

    await t.step("a second would not: 429, and no blob or job is written", async () => {
      const before = await blobFiles(gateway);
      const res = await chat("k-1", "b", second);
      assert.equal(res.status, 429);
      const { error } = await res.json() as ErrorBody;
      assert.equal(error.code, "blob_quota_exceeded");
      assert.match(error.message, /would pass BLOB_KEY_MAX_BYTES \(1048576\)/);
      assert.match(error.message, /raise BLOB_KEY_MAX_BYTES/);
      assert.deepEqual(await blobFiles(gateway), before);
      assert.equal((await gateway.jobRecords()).length, 1);
    });

    await t.step("the image it holds can be sent again; another key has its own room", async () => {
      assert.equal((await chat("k-1", "a", first)).status, 202);
      assert.equal((await chat("k-2", "c", second)).status, 202);
    });
  },
);

backendTest(
  "a stateless request's images are kept a day, a conversation's BLOB_TTL_DAYS",
  async (_t, start) => {
    const gateway = await start();
    const image = pngDataUrl();
    /** Streamed, so the answer starts once the job is written; no worker runs to end it. */
    const complete = async (headers: Record<string, string>) => {
      const res = await gateway.app.request("/v1/chat/completions", {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify({
          model: "test-vision-model",
          stream: true,
          messages: [{
            role: "user",
            content: [{ type: "text", text: "what is it?" }, {
              type: "image_url",
              image_url: { url: image },
            }],
          }],
        }),
      });
      assert.equal(res.status, 200);
      await res.body?.cancel();
    };
    const ref = await blobRef(undefined, PNG, "image/png");
    const path = ref.slice("gateway-blob:".length);
    await complete({});
    assert.deepEqual(await blobFiles(gateway), [`day/${path}`]);
    await complete({ "x-conversation-id": "kept" });
    assert.deepEqual(await blobFiles(gateway), [path, `day/${path}`].sort());
  },
);
