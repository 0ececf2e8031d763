/**
 * What the front door refuses at once rather than failing later: ids the
 * store cannot hold or that are not ids at all, image URLs of other schemes,
 * callbacks to plainly private addresses; and what `/healthz` tells anyone.
 */
import assert from "node:assert/strict";
import type { ErrorBody } from "../lib/http/errors.ts";
import { createApp } from "../lib/http/app.ts";
import { createLogger } from "../lib/core/log.ts";
import { backendTest, type TestGateway } from "./support/gateway.ts";

async function assertRefused(res: Response, status: number, param: string, pattern?: RegExp) {
  const text = await res.text();
  assert.equal(res.status, status, text);
  const { error } = JSON.parse(text) as ErrorBody;
  assert.equal(error.param, param, text);
  if (pattern) assert.match(error.message, pattern);
}

async function nothingQueued(gateway: TestGateway) {
  assert.deepEqual(await gateway.jobRecords(), [], "no job record was written");
  assert.equal((await gateway.depth("default")).waiting, 0, "nothing was queued");
}

/** `target` with one method that fails with `error()`; the others are its own. */
function failing<T extends object>(target: T, method: keyof T, error: () => Error): T {
  return new Proxy(target, {
    get(inner, name) {
      if (name === method) return () => Promise.reject(error());
      const value = Reflect.get(inner, name);
      return typeof value === "function" ? value.bind(inner) : value;
    },
  });
}

function completion(gateway: TestGateway, body: unknown, headers: Record<string, string> = {}) {
  return gateway.app.request("/v1/chat/completions", {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
}

backendTest(
  "conversation ids with control characters, lone surrogates or too many characters get a 400",
  async (t, start) => {
    const gateway = await start();
    const bad = ["a\u0000b", "tab\there", "\ud800alone", "x".repeat(257), "\u0085next"];

    await t.step("in the body of POST /chat", async () => {
      for (const id of bad) {
        await assertRefused(
          await gateway.postChat({ conversation_id: id, user_message: "hi" }),
          400,
          "conversation_id",
        );
      }
    });

    await t.step("in the query of GET /conversation, however long", async () => {
      // A URL carries no lone surrogate: it is encoded as U+FFFD.
      for (const id of [...bad.filter((id) => id.isWellFormed()), "y".repeat(3000)]) {
        const query = new URLSearchParams({ conversation_id: id });
        await assertRefused(
          await gateway.app.request(`/conversation?${query}`),
          400,
          "conversation_id",
        );
      }
    });

    await t.step("in the X-Conversation-Id and X-OpenWebUI-Chat-Id headers", async () => {
      const body = { messages: [{ role: "user", content: "hi" }] };
      for (const header of ["x-conversation-id", "x-openwebui-chat-id"]) {
        await assertRefused(await completion(gateway, body, { [header]: "a\u0001b" }), 400, header);
        await assertRefused(
          await completion(gateway, body, { [header]: "z".repeat(300) }),
          400,
          header,
          /at most 256 characters/,
        );
      }
    });
    await nothingQueued(gateway);
  },
);

backendTest(
  "GET /jobs/:id answers only for job ids: a conversation's line item is never shown",
  async (t, start) => {
    const gateway = await start();
    const first = await gateway.send({ conversation_id: "busy", user_message: "one" });
    await gateway.send({ conversation_id: "busy", user_message: "two" });

    await t.step("a job id works", async () => {
      const res = await gateway.app.request(`/jobs/${first.job_id}`);
      assert.equal(res.status, 200);
    });

    await t.step("the line item of the conversation is not a job", async () => {
      for (const path of ["/jobs/line%23busy", "/jobs/line%23busy/cancel"]) {
        const res = await gateway.app.request(path, {
          method: path.endsWith("cancel") ? "POST" : "GET",
        });
        const text = await res.text();
        assert.equal(res.status, 404, text);
        assert.ok(!text.includes(first.job_id), text);
      }
    });

    await t.step("an id far longer than the store allows is a 404, not a 500", async () => {
      const res = await gateway.app.request(`/jobs/${"j".repeat(5000)}`);
      assert.equal(res.status, 404);
      assert.equal((await res.json() as ErrorBody).error.param, "job_id");
    });
  },
);

backendTest(
  "image URLs of other schemes and callbacks to private addresses are refused at once",
  async (t, start) => {
    const gateway = await start();
    const chat = (extra: Record<string, unknown>) =>
      gateway.postChat({ conversation_id: "c", user_message: "hi", ...extra });

    await t.step("POST /chat images other than http, https or data:", async () => {
      for (const url of ["ftp://files.example/a.png", "file:///etc/passwd", "javascript:1"]) {
        await assertRefused(
          await chat({ images: [{ image_url: url }] }),
          400,
          "images[0].image_url",
          /is not accepted; use http, https or data:/,
        );
      }
      await assertRefused(
        await chat({ images: [{ image_url: "https://me:pw@images.example/a.png" }] }),
        400,
        "images[0].image_url",
        /user name or password/,
      );
    });

    await t.step("an image part of /v1/chat/completions of another scheme", async () => {
      const content = [{ type: "text", text: "hi" }, {
        type: "image_url",
        image_url: { url: "file:///etc/passwd" },
      }];
      await assertRefused(
        await completion(gateway, { messages: [{ role: "user", content }] }),
        400,
        "messages[0].content[1].image_url.url",
      );
    });

    await t.step("data: URLs that are not base64, or whose base64 does not decode", async () => {
      const cases: [string, RegExp][] = [
        [`data:image/png,${"A".repeat(200_000)}`, /must be base64/],
        ["data:image/png;base64,@@@@", /does not decode/],
        ["data:image/png;base64,iVBORw0KGgo-_", /not base64url/],
      ];
      for (const [url, message] of cases) {
        const content = [{ type: "text", text: "hi" }, { type: "image_url", image_url: { url } }];
        await assertRefused(
          await completion(gateway, { messages: [{ role: "user", content }] }),
          400,
          "messages[0].content[1].image_url.url",
          message,
        );
      }
      assert.deepEqual(await gateway.jobRecords(), []);
    });

    await t.step("callback URLs on loopback, private or metadata addresses", async () => {
      for (
        const url of [
          "http://127.0.0.1:9/hook",
          "http://localhost:9/hook",
          "http://app.localhost/hook",
          "http://[::1]/hook",
          "http://10.1.2.3/hook",
          "http://169.254.169.254/latest",
          "http://0x7f000001/hook",
        ]
      ) {
        await assertRefused(
          await chat({ callback_url: url }),
          400,
          "callback_url",
          /is not a public address/,
        );
      }
    });
    await nothingQueued(gateway);

    await t.step("a callback host listed in CALLBACK_ALLOWED_HOSTS is accepted", async () => {
      const allowed = await start({ env: { CALLBACK_ALLOWED_HOSTS: "127.0.0.1:9,localhost" } });
      for (const url of ["http://127.0.0.1:9/hook", "http://localhost:9/hook"]) {
        const res = await allowed.postChat({
          conversation_id: url,
          user_message: "hi",
          callback_url: url,
        });
        assert.equal(res.status, 202, await res.text());
      }
    });
  },
);

backendTest(
  "GET /healthz says degraded without the store's error, which goes to the log",
  async (t, start) => {
    const gateway = await start();
    const lines: string[] = [];
    const failingQueue = {
      ...gateway.services.queue,
      depth: () => Promise.reject(new Error("AccessDenied for arn:aws:sqs:us-east-1:123456789012")),
    };
    const app = createApp(
      { ...gateway.services, queue: failingQueue },
      { logger: createLogger({ write: (l) => lines.push(l) }) },
    );

    await t.step("the answer says degraded, and nothing of why", async () => {
      const res = await app.request("/healthz");
      assert.equal(res.status, 200);
      const text = await res.text();
      assert.equal(JSON.parse(text).status, "degraded");
      assert.ok(!text.includes("AccessDenied") && !text.includes("123456789012"), text);
    });

    await t.step("the log says why", () => {
      assert.ok(lines.some((l) => l.includes("AccessDenied for arn:aws:sqs")), lines.join("\n"));
    });

    await t.step("with keys, only a caller with a key sees queues and worker", async () => {
      const keyed = await start({ env: { GATEWAY_API_KEYS: "k-1" } });
      const anonymous = await (await keyed.app.request("/healthz")).json();
      assert.deepEqual(anonymous, { status: "ok" });
      const wrongKey = await (await keyed.app.request("/healthz", {
        headers: { authorization: "Bearer nope" },
      })).json();
      assert.deepEqual(wrongKey, { status: "ok" });
      const withKey = await (await keyed.app.request("/healthz", {
        headers: { authorization: "Bearer k-1" },
      })).json();
      assert.equal(withKey.status, "ok");
      assert.ok(withKey.queues && withKey.worker, JSON.stringify(withKey));
    });
  },
);

backendTest(
  "a storage service's error text reaches no client: the log has it, with the request id",
  async (t, start) => {
    const gateway = await start();
    const lines: string[] = [];
    const denied = () =>
      Object.assign(
        new Error(
          "User: arn:aws:sts::123456789012:assumed-role/llm-gateway-FrontDoorRole-ABC/x is not authorized to perform: sqs:sendmessage on resource: arn:aws:sqs:us-east-1:123456789012:llm-jobs-vllm",
        ),
        { name: "AccessDenied", $metadata: { httpStatusCode: 403 } },
      );
    const app = createApp(
      {
        ...gateway.services,
        queue: failing(gateway.services.queue, "send", denied),
        store: failing(gateway.services.store, "listJobs", denied),
      },
      { logger: createLogger({ write: (l) => lines.push(l) }) },
    );
    const secret = /123456789012|arn:aws|FrontDoorRole/;

    await t.step("a queue that refuses a job: 503, the queue is unavailable", async () => {
      const res = await app.request("/chat", {
        method: "POST",
        headers: { "content-type": "application/json", "x-request-id": "req-queue" },
        body: JSON.stringify({ conversation_id: "c", user_message: "hi" }),
      });
      const text = await res.text();
      assert.equal(res.status, 503, text);
      assert.doesNotMatch(text, secret);
      const { error } = JSON.parse(text) as ErrorBody;
      assert.match(
        error.message,
        /^Cannot enqueue job: the queue is unavailable \(request id req-queue/,
      );
      const [job] = await gateway.jobRecords();
      assert.equal(job.status, "failed");
      assert.doesNotMatch(job.error ?? "", secret);
      assert.match(job.error ?? "", /the queue is unavailable/);
    });

    await t.step("a store that refuses a read: 503, not the store's words", async () => {
      const res = await app.request("/v1/jobs", { headers: { "x-request-id": "req-store" } });
      const text = await res.text();
      assert.equal(res.status, 503, text);
      assert.doesNotMatch(text, secret);
      assert.match(text, /the gateway's storage is unavailable \(request id req-store/);
    });

    await t.step("the log has each error, with its request id", () => {
      for (const id of ["req-queue", "req-store"]) {
        const line = lines.find((l) => l.includes(`"request_id":"${id}"`) && l.includes("arn:aws"));
        assert.ok(line, `a log line for ${id} with the error:\n${lines.join("\n")}`);
      }
    });
  },
);

backendTest(
  "refusals say what to do: the method, the route, the image type, every bad parameter",
  async (t, start) => {
    const gateway = await start();

    await t.step("GET /chat is a 405 that says to use POST", async () => {
      const res = await gateway.app.request("/chat");
      assert.equal(res.status, 405);
      assert.equal(res.headers.get("allow"), "POST");
      assert.match((await res.json() as ErrorBody).error.message, /send the request as POST/);
      const other = await gateway.app.request("/v1/models", { method: "DELETE" });
      assert.equal(other.status, 405);
      assert.equal(other.headers.get("allow"), "GET, HEAD");
    });

    await t.step("an OpenAI-shaped body sent to /chat points to /v1/chat/completions", async () => {
      await assertRefused(
        await gateway.postChat({ model: "x", messages: [{ role: "user", content: "hi" }] }),
        400,
        "messages",
        /POST \/v1\/chat\/completions/,
      );
    });

    await t.step("a data: URL that is not an image is refused, naming its type", async () => {
      const text = `data:text/plain;base64,${btoa("not an image")}`;
      await assertRefused(
        await gateway.postChat({
          conversation_id: "c",
          user_message: "hi",
          images: [{ image_url: text }],
        }),
        400,
        "images[0].image_url",
        /must hold an image .*got text\/plain/,
      );
      const content = [{ type: "text", text: "hi" }, {
        type: "image_url",
        image_url: { url: "data:application/pdf;base64,JVBERi0=" },
      }];
      await assertRefused(
        await completion(gateway, { messages: [{ role: "user", content }] }),
        400,
        "messages[0].content[1].image_url.url",
        /got application\/pdf/,
      );
    });

    await t.step("a query with two bad parameters names both", async () => {
      const res = await gateway.app.request("/v1/jobs?limit=0&status=lost");
      assert.equal(res.status, 400);
      const { error } = await res.json() as ErrorBody;
      assert.deepEqual(error.details?.map((d) => d.param), ["limit", "status"]);
    });
    await nothingQueued(gateway);

    await t.step("a cancel needs no body", async () => {
      const job = await gateway.send({ conversation_id: "to-cancel", user_message: "hi" });
      // `curl -X POST`: a body stream with nothing in it, and fetch's default type for a string.
      const res = await gateway.app.request(`/jobs/${job.job_id}/cancel`, {
        method: "POST",
        body: "",
      });
      assert.equal(res.status, 200, await res.clone().text());
      assert.equal((await res.json()).status, "canceled");
    });
  },
);
