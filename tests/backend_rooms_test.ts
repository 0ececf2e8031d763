/** BackendRooms: which of a backend's started runs count against its room, and when. */
import assert from "node:assert/strict";
import { loadConfig } from "../lib/core/config.ts";
import { backendsFromConfig } from "../lib/core/backends.ts";
import { BackendRooms, capacity } from "../lib/worker/backend_rooms.ts";

function setUp(maxImageJobs?: number) {
  const [backend] = backendsFromConfig(
    loadConfig({ LLM_BACKENDS: "b", LLM_B_KIND: "ollama", LLM_B_CONCURRENCY: "1" }),
  );
  let told = 0;
  const rooms = new BackendRooms([backend], { onRoom: () => told++, maxImageJobs });
  return { backend, rooms, told: () => told };
}

Deno.test("BackendRooms counts a run from its start until its model place is given back", async () => {
  const { backend, rooms, told } = setUp();
  assert.equal(capacity(backend), 2);
  const first = rooms.enter("b");
  const second = rooms.enter("b");
  assert.equal(rooms.room(backend, 0), 0);
  assert.ok(rooms.isFull(backend));
  const release = await first.place("b", { urgent: false });
  let secondPlaced = false;
  const placed = second.place("b", { urgent: false }).then((release) => {
    secondPlaced = true;
    return release;
  });
  await Promise.resolve();
  assert.equal(secondPlaced, false, "one place: the second waits");
  release();
  (await placed)();
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(rooms.room(backend, 0), 2, "both places given back: the room is free again");
  assert.equal(told(), 2);
  first.leave();
  second.leave();
  assert.equal(told(), 2, "a run already uncounted tells nobody twice");
});

Deno.test("BackendRooms lets a run fetch images outside its room, and counts it again after", async () => {
  const { backend, rooms, told } = setUp();
  const run = rooms.enter("b");
  const fetched = Promise.withResolvers<string>();
  const fetching = run.fetchingImages(() => fetched.promise);
  assert.equal(rooms.room(backend, 0), 2, "the room is free while it fetches");
  assert.equal(rooms.imageJobs, 1);
  assert.equal(told(), 1, "the loops were told");
  fetched.resolve("images");
  assert.equal(await fetching, "images");
  assert.equal(rooms.room(backend, 0), 1, "back in its room to wait for a place");
  assert.equal(rooms.imageJobs, 0);
  run.leave();
  assert.equal(rooms.room(backend, 0), 2);
});

Deno.test("BackendRooms lets at most its bound of runs fetch images outside their rooms", async () => {
  const { backend, rooms } = setUp(1);
  const [a, b] = [rooms.enter("b"), rooms.enter("b")];
  const done = Promise.withResolvers<void>();
  const fetchingA = a.fetchingImages(() => done.promise);
  const fetchingB = b.fetchingImages(() => done.promise);
  assert.equal(rooms.imageJobs, 1);
  assert.equal(rooms.room(backend, 0), 1, "the second fetches in its room, as before");
  done.resolve();
  await Promise.all([fetchingA, fetchingB]);
  assert.equal(rooms.room(backend, 0), 0);
  a.leave();
  b.leave();
  assert.equal(rooms.room(backend, 0), 2);
});
