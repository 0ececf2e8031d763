// The gateway's console: plain JavaScript, no build step. It only talks to the
// gateway that served it, with the key kept in this tab's sessionStorage.
// Everything shown comes from the gateway's JSON and is set as text, never HTML.
// "Try a chat" is in console_chat.js, loaded after this script.
"use strict";

const KEY_ITEM = "gateway-api-key";
const STATUS_EVERY_MS = 5000;
const JOBS_EVERY_MS = 15000;
const $ = (id) => document.getElementById(id);
const state = { key: sessionStorage.getItem(KEY_ITEM) ?? "", cursor: null, timers: [] };

/** A refused key: the page goes back to asking for one. */
class KeyRefused extends Error {}

async function call(path, init = {}) {
  const headers = new Headers(init.headers);
  if (state.key) headers.set("authorization", `Bearer ${state.key}`);
  if (init.body !== undefined) headers.set("content-type", "application/json");
  const res = await fetch(path, { ...init, headers });
  if (res.status === 401) {
    const body = await res.json().catch(() => null);
    throw new KeyRefused(body?.error?.message ?? "The key was refused");
  }
  return res;
}

async function callJson(path, init) {
  const res = await call(path, init);
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new Error(body?.error?.message ?? `${path} answered ${res.status}`);
  return body;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("data-")) node.setAttribute(name, value);
    else node[name] = value;
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function seconds(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

function ago(iso) {
  return `${seconds(Date.now() - Date.parse(iso))} ago`;
}

// --- signing in ---------------------------------------------------------

async function start() {
  $("loading").hidden = true;
  try {
    const models = await callJson("/v1/models");
    showConsole(models.data ?? []);
  } catch (err) {
    if (!(err instanceof KeyRefused)) throw err;
    askForKey(state.key ? err.message : "");
  }
}

function askForKey(message) {
  stopTimers();
  state.key = "";
  sessionStorage.removeItem(KEY_ITEM);
  $("console").hidden = true;
  $("sign-out").hidden = true;
  $("key-form").hidden = false;
  $("key-error").textContent = message;
  $("key-input").focus();
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.key = $("key-input").value.trim();
  $("key-input").value = "";
  sessionStorage.setItem(KEY_ITEM, state.key);
  start().catch(showFailure);
});

$("sign-out").addEventListener("click", () => askForKey(""));

function showConsole(models) {
  $("key-form").hidden = true;
  $("console").hidden = false;
  $("sign-out").hidden = !state.key;
  $("model").replaceChildren(...models.map(modelOption));
  // console_chat.js fits the form to the model chosen.
  $("model").dispatchEvent(new Event("change"));
  refreshStatus();
  refreshJobs();
  refreshUsage();
  stopTimers();
  state.timers.push(setInterval(refreshStatus, STATUS_EVERY_MS));
  state.timers.push(setInterval(refreshJobs, JOBS_EVERY_MS));
  state.timers.push(setInterval(refreshUsage, JOBS_EVERY_MS));
}

/** A model to pick; an embedding model is marked, and sending embeds its message. */
function modelOption(m) {
  const embeds = m.capabilities?.includes("embedding") && !m.capabilities.includes("completion");
  return el("option", {
    value: m.id,
    textContent: `${m.id} (${m.owned_by}${embeds ? ", embedding" : ""})`,
    "data-kind": embeds ? "embedding" : "chat",
  });
}

function stopTimers() {
  state.timers.forEach(clearInterval);
  state.timers = [];
}

/** Runs a refresh; a refused key asks for another, anything else shows where it belongs. */
function guarded(task, where) {
  return task().catch((err) => {
    if (err instanceof KeyRefused) askForKey(err.message);
    else if (where) where.textContent = err.message;
  });
}

function showFailure(err) {
  $("loading").hidden = false;
  $("loading").textContent = `The gateway could not be read: ${err.message}`;
}

// --- status -------------------------------------------------------------

function refreshStatus() {
  return guarded(async () => {
    const health = await callJson("/healthz");
    renderStatus(health);
  }, $("status-updated"));
}

const LANES = ["priority", "default"];
const STATE_LABELS = { up: "up", down: "down", no_worker: "no worker" };

/** A summary line, then one card per backend: its state, queues, live workers and models. */
function renderStatus(health) {
  const backends = Object.entries(health.backends ?? {});
  const up = backends.filter(([, b]) => b.status === "up").length;
  const summary = health.status !== "ok"
    ? ["degraded", "store or queue unreadable"]
    : backends.length === 0
    ? ["degraded", "no backend configured"]
    : [up === backends.length ? "alive" : "stale", `${up} of ${backends.length} backends up`];
  $("status-summary").className = `badge ${summary[0]}`;
  $("status-summary").textContent = summary[1];
  const worker = health.worker ?? {};
  $("status-seen").textContent = worker.last_seen
    ? `a worker was last seen ${seconds((worker.seconds_ago ?? 0) * 1000)} ago`
    : "no worker seen yet";
  $("backends").replaceChildren(...backends.map(([name, b]) => backendCard(name, b)));
  const dead = Object.values(health.queues ?? {}).reduce((sum, depth) => sum + depth.dead, 0);
  $("dead-count").textContent = `${dead} message${dead === 1 ? "" : "s"} in the dead-letter queues`;
  $("status-updated").textContent = health.error ??
    `Store: ${health.backend}; updated ${new Date().toLocaleTimeString()}, every ${
      STATUS_EVERY_MS / 1000
    } s`;
}

function backendCard(name, backend) {
  const state = backend.status;
  const rows = LANES.map((lane) => {
    const depth = backend.queues?.[lane] ?? { waiting: 0, in_flight: 0, dead: 0 };
    return el(
      "tr",
      { "data-lane": lane },
      el("th", { scope: "row", textContent: lane }),
      el("td", { class: "num waiting", textContent: String(depth.waiting) }),
      el("td", { class: "num in-flight", textContent: String(depth.in_flight) }),
      el("td", { class: "num dead", textContent: String(depth.dead) }),
    );
  });
  const queues = el(
    "table",
    { class: "queues" },
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        ...["Queue", "Waiting", "In flight", "Dead"].map((h) =>
          el("th", { scope: "col", textContent: h })
        ),
      ),
    ),
    el("tbody", {}, ...rows),
  );
  const workers = backend.workers?.length
    ? el(
      "ul",
      { class: "workers" },
      ...backend.workers.map((w) =>
        el("li", {
          "data-worker": w.worker_id,
          title: w.worker_id,
          textContent: `worker ${w.worker_id.slice(0, 8)} · seen ${
            seconds(w.seconds_ago * 1000)
          } ago`,
        })
      ),
    )
    : el("p", {
      class: "workers none",
      textContent: backend.last_seen
        ? `No live worker; one was last seen ${seconds(backend.seconds_ago * 1000)} ago`
        : "No worker has been seen yet",
    });
  return el(
    "article",
    { class: `backend ${state}`, "data-backend": name },
    el(
      "h3",
      {},
      el("span", { class: "name", textContent: name }),
      el("span", { class: `badge ${state}`, textContent: STATE_LABELS[state] ?? state }),
    ),
    state === "down"
      ? el("p", { class: "reason error-text", textContent: backend.error ?? "no reason reported" })
      : null,
    backend.stale
      ? el("p", {
        class: "hint stale-note",
        textContent: "New messages for it are refused until a worker is seen (WORKER_STALE_S).",
      })
      : null,
    el("div", { class: "table-wrap" }, queues),
    workers,
    el("p", {
      class: "models",
      textContent: backend.models?.length
        ? `Models: ${backend.models.join(", ")}`
        : "Models: none reported",
    }),
  );
}

// --- recent jobs --------------------------------------------------------

function refreshJobs() {
  return guarded(async () => {
    const [page, stats, failed] = await Promise.all([
      callJson("/v1/jobs?limit=20"),
      callJson("/v1/jobs/stats?minutes=60"),
      callJson("/v1/jobs?status=failed&limit=20"),
    ]);
    state.cursor = page.next_cursor;
    $("job-table").tBodies[0].replaceChildren(...page.data.map(jobRow));
    $("jobs-empty").hidden = page.data.length > 0;
    $("more-jobs").hidden = !page.has_more;
    drawChart(stats);
    renderDeadLetters(failed.data);
  }, $("jobs-empty"));
}

$("more-jobs").addEventListener("click", () =>
  guarded(async () => {
    const page = await callJson(`/v1/jobs?limit=20&cursor=${encodeURIComponent(state.cursor)}`);
    state.cursor = page.next_cursor;
    $("job-table").tBodies[0].append(...page.data.map(jobRow));
    $("more-jobs").hidden = !page.has_more;
  }));

function jobRow(job) {
  const attempts = job.retries ? `${job.attempts} (retried ${job.retries}×)` : String(job.attempts);
  return el(
    "tr",
    { "data-job": job.job_id, title: job.job_id },
    el("td", { textContent: ago(job.created_at) }),
    el("td", {}, el("span", { class: `badge ${job.status}`, textContent: job.status })),
    el("td", { textContent: job.route }),
    el("td", { textContent: job.model }),
    el("td", { class: "num", textContent: attempts }),
    el("td", { class: "num", textContent: seconds(job.wait_ms) }),
    el("td", { class: "num", textContent: seconds(job.run_ms) }),
    el("td", { class: "error-text", textContent: job.status === "failed" ? job.error ?? "" : "" }),
  );
}

// --- dead letters -------------------------------------------------------

function renderDeadLetters(jobs) {
  $("dead-empty").hidden = jobs.length > 0;
  $("dead-list").replaceChildren(...jobs.map((job) => {
    const retry = el("button", { type: "button", class: "secondary", textContent: "Retry" });
    const outcome = el("span", { class: "outcome", role: "status" });
    retry.addEventListener("click", () => retryJob(job.job_id, retry, outcome));
    return el(
      "li",
      { "data-job": job.job_id },
      el("span", {
        class: "meta",
        textContent: `${job.model} · ${ago(job.created_at)} · ${job.job_id}`,
      }),
      el("span", { class: "error-text", textContent: job.error ?? "no reason recorded" }),
      retry,
      outcome,
    );
  }));
}

async function retryJob(jobId, button, outcome) {
  button.disabled = true;
  try {
    const res = await call("/admin/dead-letters/retry", {
      method: "POST",
      body: JSON.stringify({ job_id: jobId }),
    });
    const body = await res.json().catch(() => null);
    const said = res.ok
      ? body.retry === "sent"
        ? "sent back to run"
        : `waits in its conversation behind ${body.behind}`
      : body?.error?.message ?? `The gateway answered ${res.status}`;
    outcome.textContent = said;
    // Kept where a refresh of the list (which drops a job no longer failed) leaves it.
    $("dead-result").textContent = `Job ${jobId}: ${said}`;
    if (res.ok) setTimeout(refreshJobs, 1000);
  } catch (err) {
    if (err instanceof KeyRefused) askForKey(err.message);
    else outcome.textContent = err.message;
  } finally {
    button.disabled = false;
  }
}

$("retry-all").addEventListener("click", () =>
  guarded(async () => {
    $("retry-all").disabled = true;
    try {
      const res = await call("/admin/dead-letters/retry", {
        method: "POST",
        body: JSON.stringify({ all: true }),
      });
      const body = await res.json().catch(() => null);
      if (!res.ok) throw new Error(body?.error?.message ?? `The gateway answered ${res.status}`);
      // Only the queues that had something to move: a move task, or messages copied.
      const queues = Object.entries(body.redrive.backends).flatMap(([backend, lanes]) =>
        Object.entries(lanes).flatMap(([lane, r]) =>
          r.moved === undefined
            ? [`${backend} ${lane}: move task started`]
            : r.moved > 0
            ? [`${backend} ${lane}: ${r.moved} moved`]
            : []
        )
      );
      $("dead-result").textContent = queues.length === 0
        ? "No dead letters to move."
        : `Redriving (${
          queues.join(", ")
        }): the worker retries each job as its message comes back.`;
      setTimeout(refreshJobs, 1500);
      refreshStatus();
    } finally {
      $("retry-all").disabled = false;
    }
  }, $("dead-result")));

start().catch(showFailure);
