import assert from "node:assert/strict";
import { Semaphore } from "../lib/worker/semaphore.ts";

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
