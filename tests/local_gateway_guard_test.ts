/**
 * A gateway without API keys (`deno task dev`) answers anyone who can reach
 * it, web pages included: bodies must be JSON, and without keys a foreign
 * Origin or a Host the gateway does not answer to is refused. Request bodies
 * have a read deadline. A Host that is no host at all is a 400, keys or not.
 */
import assert from "node:assert/strict";
import type { ErrorBody } from "../lib/http/errors.ts";
import { backendTest, type TestGateway } from "./support/gateway.ts";
import { within } from "./support/wait.ts";

const BODY = JSON.stringify({ conversation_id: "c", user_message: "from a web page" });

function post(gateway: TestGateway, url: string, headers: Record<string, string>) {
  return gateway.app.request(url, { method: "POST", headers, body: BODY });
}

async function assertStatus(res: Response, status: number, code?: string) {
  const text = await res.text();
  assert.equal(res.status, status, text);
  if (code) assert.equal((JSON.parse(text) as ErrorBody).error.code, code);
}

backendTest(
  "without keys, a web page's text/plain post, foreign Origin or rebound Host is refused",
  async (t, start) => {
    const gateway = await start();
    const json = { "content-type": "application/json" };

    await t.step("a body that is not declared as JSON gets a 415", async () => {
      await assertStatus(
        await post(gateway, "/chat", { "content-type": "text/plain;charset=UTF-8" }),
        415,
        "unsupported_content_type",
      );
      await assertStatus(await post(gateway, "/chat", {}), 415);
    });

    await t.step("a foreign Origin gets a 403", async () => {
      for (const origin of ["http://evil.example", "null", "http://localhost.evil.example"]) {
        await assertStatus(
          await post(gateway, "/chat", { ...json, origin }),
          403,
          "forbidden_origin",
        );
      }
      await assertStatus(
        await gateway.app.request("/conversation?conversation_id=c", {
          headers: { origin: "https://evil.example" },
        }),
        403,
        "forbidden_origin",
      );
    });

    await t.step("a Host that is a name the gateway was not given gets a 403", async () => {
      await assertStatus(
        await post(gateway, "http://rebind.evil.example:8787/chat", json),
        403,
        "forbidden_host",
      );
      await assertStatus(
        await gateway.app.request("http://rebind.evil.example/healthz"),
        403,
        "forbidden_host",
      );
    });
    assert.deepEqual(await gateway.jobRecords(), [], "nothing was written");

    await t.step(
      "the gateway's own names, its own origin and IP addresses are served",
      async () => {
        await assertStatus(await post(gateway, "http://127.0.0.1:8787/chat", json), 202);
        await assertStatus(
          await post(gateway, "http://localhost:8787/chat", {
            ...json,
            origin: "http://localhost:8787",
          }),
          202,
        );
        await assertStatus(await gateway.app.request("http://[::1]:8787/healthz"), 200);
      },
    );

    await t.step("ALLOWED_HOSTS and CORS_ORIGINS admit a name and an origin", async () => {
      const named = await start({
        env: { ALLOWED_HOSTS: "gateway.lan", CORS_ORIGINS: "http://owui.lan:3000" },
      });
      await assertStatus(
        await post(named, "http://gateway.lan:8787/chat", {
          ...json,
          origin: "http://owui.lan:3000",
        }),
        202,
      );
      await assertStatus(await named.app.request("http://other.lan/healthz"), 403);
    });
  },
);

backendTest(
  "with keys, Host and Origin are not checked, but bodies must still be JSON",
  async (_t, start) => {
    const gateway = await start({ env: { GATEWAY_API_KEYS: "k-1" } });
    const headers = {
      "content-type": "application/json",
      origin: "https://some.app",
      authorization: "Bearer k-1",
    };
    await assertStatus(await post(gateway, "http://gw.example.com/chat", headers), 202);
    await assertStatus(
      await post(gateway, "http://gw.example.com/chat", {
        ...headers,
        "content-type": "text/plain",
      }),
      415,
    );
  },
);

backendTest(
  "on a real socket: a rebound Host is a 403, a Host that is no host a 400, a stalled body a 408, a bare cancel fine",
  async (t, start) => {
    const gateway = await start({ env: { BODY_TIMEOUT_S: "1" } });
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      gateway.app.fetch,
    );
    const port = server.addr.port;
    /** Sends raw bytes and reads the status line of the answer. */
    const exchange = async (request: string) => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        await conn.write(new TextEncoder().encode(request));
        const buffer = new Uint8Array(4096);
        const read = await within(conn.read(buffer), "the gateway's answer", 15_000);
        return new TextDecoder().decode(buffer.subarray(0, read ?? 0));
      } finally {
        conn.close();
      }
    };
    try {
      await t.step("Host: rebind.evil.example", async () => {
        const answer = await exchange(
          "GET /healthz HTTP/1.1\r\nHost: rebind.evil.example\r\nConnection: close\r\n\r\n",
        );
        assert.match(answer, /^HTTP\/1\.1 403 /);
      });

      await t.step("a Host that is not a host is a 400, with or without keys", async () => {
        const request = (host: string) =>
          `GET /healthz HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`;
        for (const host of ["evil.com 127.0.0.1", "[::1", "a b"]) {
          const answer = await exchange(request(host));
          assert.match(answer, /^HTTP\/1\.1 400 /, answer);
          assert.match(answer, /Invalid Host header/);
        }
        const keyed = await start({ env: { GATEWAY_API_KEYS: "k-1" } });
        const keyedServer = Deno.serve(
          { hostname: "127.0.0.1", port: 0, onListen: () => {} },
          keyed.app.fetch,
        );
        try {
          const conn = await Deno.connect({ hostname: "127.0.0.1", port: keyedServer.addr.port });
          await conn.write(new TextEncoder().encode(request("evil.com 127.0.0.1")));
          const buffer = new Uint8Array(4096);
          const read = await within(conn.read(buffer), "the keyed gateway's answer", 15_000);
          conn.close();
          assert.match(new TextDecoder().decode(buffer.subarray(0, read ?? 0)), /^HTTP\/1\.1 400 /);
        } finally {
          await keyedServer.shutdown();
        }
      });

      await t.step("headers promising 500 bytes, then 10 and silence", async () => {
        const answer = await exchange(
          `POST /chat HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\n` +
            "Content-Length: 500\r\n\r\n" + '{"convers',
        );
        assert.match(answer, /^HTTP\/1\.1 408 /);
        assert.match(answer, /BODY_TIMEOUT_S/);
      });
      assert.deepEqual(await gateway.jobRecords(), []);

      await t.step("a cancel sent without a body, as `curl -X POST` sends it", async () => {
        const job = await gateway.send({ conversation_id: "c", user_message: "never mind" });
        const answer = await exchange(
          `POST /jobs/${job.job_id}/cancel HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
            "Connection: close\r\n\r\n",
        );
        assert.match(answer, /^HTTP\/1\.1 200 /, answer);
        assert.match(answer, /"status":"canceled"/);
      });
    } finally {
      await server.shutdown();
    }
  },
);
