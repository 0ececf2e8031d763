/**
 * What one client can make the front door do for everyone else: a body
 * nested a million levels deep is refused before it is parsed, and only
 * `MAX_LARGE_BODIES` large bodies are read at once, the others waiting
 * unread for a place.
 */
import assert from "node:assert/strict";
import type { ErrorBody } from "../lib/http/errors.ts";
import { backendTest, type TestGateway } from "./support/gateway.ts";
import { eventually, within } from "./support/wait.ts";

function post(gateway: TestGateway, path: string, body: BodyInit) {
  return gateway.app.request(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
    duplex: "half",
  } as RequestInit);
}

/** A JSON body whose `extra` field is `depth` arrays deep, after the given fields. */
function nested(fields: Record<string, unknown>, depth: number): string {
  const json = JSON.stringify(fields);
  return `${json.slice(0, -1)},"extra":${"[".repeat(depth)}${"]".repeat(depth)}}`;
}

backendTest(
  "a body nested deeper than 64 levels gets a 400 naming the field, and nothing is queued",
  async (t, start) => {
    const gateway = await start();
    const chat = { conversation_id: "deep", user_message: "hi" };
    const completion = { messages: [{ role: "user", content: "hi" }] };

    await t.step(
      "a million levels, 2 MB, on POST /v1/chat/completions and POST /chat",
      async () => {
        for (
          const [path, fields] of [["/v1/chat/completions", completion], ["/chat", chat]] as const
        ) {
          const res = await post(gateway, path, nested(fields, 1_000_000));
          const text = await res.text();
          assert.equal(res.status, 400, `${path}: ${text.slice(0, 300)}`);
          const { error } = JSON.parse(text) as ErrorBody;
          assert.equal(error.param, "extra[0][0][0][0][0]…");
          assert.match(error.message, /nested more than 64 levels deep \(arrays and objects\)/);
        }
      },
    );

    await t.step("65 levels inside a message's content is refused there too", async () => {
      const content = JSON.parse(`${"[".repeat(62)}${"]".repeat(62)}`);
      const res = await post(
        gateway,
        "/v1/chat/completions",
        JSON.stringify({ messages: [{ role: "user", content }] }),
      );
      const { error } = await res.json() as ErrorBody;
      assert.equal(res.status, 400);
      assert.equal(error.param, "messages[0].content[0][0][0]…");
    });
    assert.deepEqual(await gateway.jobRecords(), [], "no job record was written");
    assert.equal((await gateway.depth("default")).waiting, 0, "nothing was queued");

    await t.step("64 levels is not too deep", async () => {
      // The body is one level, so its field may nest 63 more.
      const res = await post(gateway, "/chat", nested(chat, 63));
      assert.equal(res.status, 202, await res.text());
    });
  },
);

/** A body that sends its first `bytes` at once, then waits for `finish()` before the rest. */
function stalledBody(fields: Record<string, unknown>, bytes: number) {
  let finish = () => {};
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const head = `${JSON.stringify(fields).slice(0, -1)},"padding":"${"x".repeat(bytes)}`;
  let sent = false;
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (!sent) {
        sent = true;
        controller.enqueue(new TextEncoder().encode(head));
        return;
      }
      await finished;
      controller.enqueue(new TextEncoder().encode(`"}`));
      controller.close();
    },
  });
  return { stream, finish };
}

backendTest(
  "only MAX_LARGE_BODIES large bodies are read at once; another waits, then gets a 503 naming it",
  async (t, start) => {
    // A body may wait for a place half of BODY_TIMEOUT_S: 3 s here.
    const gateway = await start({ env: { MAX_LARGE_BODIES: "1", BODY_TIMEOUT_S: "6" } });
    const slow = stalledBody({ conversation_id: "slow", user_message: "hi" }, 1_200_000);
    const slowAnswer = Promise.resolve(post(gateway, "/chat", slow.stream));
    // A large body the front door refuses once read (no user_message), so nothing is written.
    const large = JSON.stringify({ conversation_id: "large", padding: "y".repeat(1_500_000) });

    await t.step("while one large body is being read, another is refused", async () => {
      let refusal: Response | undefined;
      await eventually(async () => {
        const res = await post(gateway, "/chat", large);
        if (res.status === 503) refusal = res;
        else await res.body?.cancel();
        return refusal !== undefined;
      }, "a second large body to be refused");
      const { error } = await refusal!.json() as ErrorBody;
      assert.equal(error.code, "too_many_large_bodies");
      assert.match(error.message, /MAX_LARGE_BODIES/);
      assert.equal(refusal!.headers.get("retry-after"), "1");
    });

    await t.step("a small body does not wait for a place", async () => {
      const res = await post(
        gateway,
        "/chat",
        JSON.stringify({ conversation_id: "s", user_message: "hi" }),
      );
      assert.equal(res.status, 202);
    });

    await t.step("once the first body is read, its place is free again", async () => {
      slow.finish();
      const res = await within(slowAnswer, "the slow body's answer");
      assert.equal(res.status, 202, await res.text());
      const again = await post(gateway, "/chat", large);
      assert.equal(again.status, 400, "read and refused for what it holds, not for its size");
    });
  },
);

backendTest(
  "large bodies sent together all get through MAX_LARGE_BODIES places in turn",
  async (_t, start) => {
    const gateway = await start({ env: { MAX_LARGE_BODIES: "2" } });
    const answers = await Promise.all(Array.from({ length: 6 }, (_, i) =>
      post(
        gateway,
        "/chat",
        JSON.stringify({
          conversation_id: `c${i}`,
          user_message: "hi",
          padding: "z".repeat(2_000_000),
        }),
      )));
    assert.deepEqual(answers.map((res) => res.status), [202, 202, 202, 202, 202, 202]);
  },
);
