// The console's charts: jobs per minute over the last hour, and each key's
// usage per day. Plain JavaScript loaded before console.js, whose helpers
// ($, el, callJson, guarded, seconds) they use once the page has started.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attributes) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
}

/** Bars: jobs per minute; lines: median wait and run, on a scale of their own. */
// deno-lint-ignore no-unused-vars -- called by console.js, which loads after this file
function drawChart(stats) {
  const width = 600, height = 160, pad = 4;
  const buckets = stats.buckets;
  const step = (width - 2 * pad) / buckets.length;
  const maxJobs = Math.max(1, ...buckets.map((b) => b.jobs));
  const maxMs = Math.max(1, ...buckets.flatMap((b) => [b.wait_p50_ms ?? 0, b.run_p50_ms ?? 0]));
  const y = (value, max) => height - pad - (value / max) * (height - 2 * pad);
  const parts = [
    svg("line", { class: "axis", x1: 0, x2: width, y1: height - pad, y2: height - pad }),
  ];
  buckets.forEach((b, i) => {
    if (b.jobs === 0) return;
    const top = y(b.jobs, maxJobs);
    const bar = svg("rect", {
      class: "bar",
      x: pad + i * step + 1,
      y: top,
      width: Math.max(1, step - 2),
      height: height - pad - top,
    });
    bar.append(svg("title", {}));
    bar.firstChild.textContent = `${b.jobs} jobs at ${new Date(b.start).toLocaleTimeString()}`;
    parts.push(bar);
  });
  // A step per minute, so a minute with no neighbours still shows.
  for (const [field, cls] of [["wait_p50_ms", "wait"], ["run_p50_ms", "run"]]) {
    const steps = buckets.flatMap((b, i) =>
      b[field] === null ? [] : [`M${pad + i * step},${y(b[field], maxMs)}h${step}`]
    );
    if (steps.length > 0) parts.push(svg("path", { class: cls, d: steps.join("") }));
  }
  $("chart").replaceChildren(...parts);
  const total = buckets.reduce((sum, b) => sum + b.jobs, 0);
  $("chart-scale").textContent = `— ${total} jobs; tallest bar ${maxJobs}, top line ${
    seconds(maxMs)
  }${stats.truncated ? " (the busiest minutes are cut off)" : ""}`;
}

// --- usage per key ------------------------------------------------------

const USAGE_DAYS = 30;
/** Colours cycle through this many classes: key-0 … key-5. */
const KEY_COLOURS = 6;

/** Reads the usage of the last 30 days and draws it; console.js calls it every 15 s. */
function refreshUsage() {
  return guarded(async () => {
    const end = new Date().toISOString().slice(0, 10);
    const start = new Date(Date.now() - (USAGE_DAYS - 1) * 86_400_000).toISOString().slice(0, 10);
    drawUsage(await callJson(`/v1/usage?start=${start}&end=${end}`));
  }, $("usage-scale"));
}

/** Workers write usage a second after jobs end: after a chat, read it now and once it is written. */
const USAGE_SETTLE_MS = 2000;

// deno-lint-ignore no-unused-vars -- called by console_chat.js, which loads after this file
function refreshUsageAfterChat() {
  refreshUsage();
  setTimeout(refreshUsage, USAGE_SETTLE_MS);
}

function tokens(day) {
  return day.prompt_tokens + day.completion_tokens;
}

/** Bars: each day's tokens, stacked by key; the legend lists each key's totals. */
function drawUsage(usage) {
  const width = 600, height = 160, pad = 4;
  const keys = usage.keys;
  const days = keys[0]?.days.map((d) => d.date) ?? [];
  const step = (width - 2 * pad) / Math.max(1, days.length);
  const perDay = days.map((_, i) => keys.reduce((sum, k) => sum + tokens(k.days[i]), 0));
  const max = Math.max(1, ...perDay);
  const parts = [
    svg("line", { class: "axis", x1: 0, x2: width, y1: height - pad, y2: height - pad }),
  ];
  days.forEach((date, i) => {
    let base = height - pad;
    keys.forEach((key, k) => {
      const value = tokens(key.days[i]);
      if (value === 0) return;
      const tall = (value / max) * (height - 2 * pad);
      const bar = svg("rect", {
        class: `usage key-${k % KEY_COLOURS}`,
        "data-key": key.name,
        x: pad + i * step + 1,
        y: base - tall,
        width: Math.max(1, step - 2),
        height: tall,
      });
      bar.append(svg("title", {}));
      bar.firstChild.textContent = `${key.name}, ${date}: ${value} tokens in ${
        key.days[i].jobs
      } jobs`;
      parts.push(bar);
      base -= tall;
    });
  });
  $("usage-chart").replaceChildren(...parts);
  $("usage-keys").replaceChildren(...keys.map((key, k) => {
    const t = key.total;
    const failed = t.failures > 0 ? `, ${t.failures} failed` : "";
    return el(
      "li",
      { "data-key": key.name },
      el("span", { class: `swatch key-${k % KEY_COLOURS}` }),
      el("strong", { textContent: key.name }),
      ` ${t.jobs} job${
        t.jobs === 1 ? "" : "s"
      }${failed}; ${t.prompt_tokens} prompt + ${t.completion_tokens} completion tokens`,
    );
  }));
  $("usage-scale").textContent = `${usage.start} to ${usage.end}; tallest day ${max} tokens`;
}
