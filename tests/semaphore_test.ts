import assert from "node:assert/strict";
import { KeyedSemaphore, Semaphore } from "../lib/worker/semaphore.ts";

Deno.test("Semaphore lets at most its limit in, and urgent waiters go first", async () => {
  const places = new Semaphore(2);
  const first = await places.acquire();
  const second = await places.acquire();
  const order: string[] = [];
  const normal = places.acquire().then((release) => {
    order.push("normal");
    return release;
  });
  const urgent = places.acquire(true).then((release) => {
    order.push("urgent");
    return release;
  });
  await Promise.resolve();
  assert.deepEqual(order, [], "nobody gets in while both places are taken");
  first();
  first(); // a second release of the same place does nothing
  (await urgent)();
  second();
  (await normal)();
  assert.deepEqual(order, ["urgent", "normal"]);
  assert.throws(() => new Semaphore(0), RangeError);
});

Deno.test("Semaphore stops a wait when its signal aborts, and the place goes to the next waiter", async () => {
  const places = new Semaphore(1);
  const first = await places.acquire();
  const stop = new AbortController();
  const given = places.acquire(false, stop.signal);
  const next = places.acquire();
  stop.abort(new Error("no longer wanted"));
  await assert.rejects(given, /no longer wanted/);
  first();
  (await next)();
  await assert.rejects(places.acquire(false, stop.signal), /no longer wanted/, "aborted already");
  (await places.acquire())();
});

Deno.test("KeyedSemaphore bounds each key on its own and keeps only the keys in use", async () => {
  const slots = new KeyedSemaphore(2);
  const a1 = await slots.acquire("a");
  const a2 = await slots.acquire("a");
  let third = false;
  const a3 = slots.acquire("a").then((release) => {
    third = true;
    return release;
  });
  const b1 = await slots.acquire("b");
  await Promise.resolve();
  assert.equal(third, false, "a third holder of key a waits");
  assert.equal(slots.keys, 2);
  a1();
  const release3 = await a3;
  assert.equal(third, true);
  for (const release of [a2, release3, b1]) release();
  assert.equal(slots.keys, 0, "keys nobody holds are forgotten");
  const stop = new AbortController();
  const held = [await slots.acquire("c"), await slots.acquire("c")];
  const waiting = slots.acquire("c", stop.signal);
  stop.abort(new Error("time is up"));
  await assert.rejects(waiting, /time is up/);
  for (const release of held) release();
  assert.equal(slots.keys, 0, "a wait that was given up leaves nothing behind");
});

Deno.test("Semaphore gives a freed place to the key served least recently, each key's waiters in order", async () => {
  const places = new Semaphore(1);
  const order: string[] = [];
  const wait = (name: string, key: string, urgent = false) =>
    places.take({ key, urgent }).then((release) => {
      order.push(name);
      return release;
    });
  const holder = await wait("a1", "a");
  // Each gives its place back as soon as it has it: the order is the semaphore's.
  const waiting = [["a2", "a"], ["a3", "a"], ["b1", "b"], ["b2", "b"]].map(([name, key]) =>
    wait(name, key).then((release) => release())
  );
  const urgent = wait("c1", "c", true).then((release) => release());
  holder();
  await Promise.all([urgent, ...waiting]);
  assert.deepEqual(order, ["a1", "c1", "b1", "a2", "b2", "a3"]);
});
