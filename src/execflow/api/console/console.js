// execflow ops console: plain DOM, no framework, no build step.
// Every piece of data is put on the page with textContent / text nodes, never as HTML.
// Every data call sends the admin key pasted once (sessionStorage: this tab only).
"use strict";

(() => {
  const KEY_STORE = "execflow.console.key";
  const LIVE_MAX_ROWS = 200;
  const AUTO_REFRESH_MS = 5000;
  const $ = (id) => document.getElementById(id);
  const views = ["health", "queues", "dlq", "stuck", "lp", "trail", "live"];
  let current = null;
  let timer = null;
  let live = null; // {controller}

  // -- small helpers ----------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "class") node.className = value;
      else if (name === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
      else node.setAttribute(name, String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child)); // strings become text nodes
    }
    return node;
  }

  function clear(node) {
    node.replaceChildren();
    return node;
  }

  function num(value, digits) {
    if (value === null || value === undefined || value === "") return "-";
    const n = Number(value);
    return Number.isFinite(n) ? n.toFixed(digits) : String(value);
  }

  function pct(value) {
    return value === null || value === undefined ? "-" : `${(Number(value) * 100).toFixed(2)} %`;
  }

  function table(node, headers, rows) {
    clear(node);
    node.append(el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))));
    const body = el("tbody");
    for (const row of rows) {
      body.append(el("tr", {}, ...row.map((cell) => el("td", {}, cell))));
    }
    if (!rows.length) {
      body.append(el("tr", {}, el("td", { colspan: headers.length, class: "muted" }, "none")));
    }
    node.append(body);
  }

  function orderLink(orderId) {
    if (!orderId) return "-";
    return el("button", {
      type: "button",
      class: "link",
      "data-order": orderId,
      on: { click: () => openTrail(orderId) },
    }, orderId);
  }

  function idempotencyKey() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return "console-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // -- the API -----------------------------------------------------------------------------

  class Problem extends Error {
    constructor(status, body) {
      const code = (body && body.code) || "http_error";
      const detail = (body && (body.detail || body.title)) || "";
      super(`${status} ${code}${detail ? ": " + detail : ""}`);
      this.status = status;
      this.code = code;
    }
  }

  function headers(extra) {
    const key = sessionStorage.getItem(KEY_STORE);
    if (!key) throw new Problem(401, { code: "no_key", detail: "paste an admin API key above" });
    return { Authorization: `Bearer ${key}`, ...extra };
  }

  async function call(method, path, body) {
    const extra = {};
    if (method !== "GET") {
      extra["Idempotency-Key"] = idempotencyKey();
      extra["Content-Type"] = "application/json";
    }
    const response = await fetch(path, {
      method,
      headers: headers(extra),
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
    let data = null;
    const type = response.headers.get("Content-Type") || "";
    if (type.includes("json")) data = await response.json();
    if (!response.ok) throw new Problem(response.status, data);
    return data;
  }

  function showProblem(view, error) {
    const box = $(`${view}-problem`);
    if (!error) {
      box.hidden = true;
      clear(box);
      return;
    }
    clear(box).append(error instanceof Problem ? error.message : `error: ${error.message || error}`);
    box.hidden = false;
  }

  function showMessage(view, text) {
    const box = $(`${view}-message`);
    clear(box).append(text);
    box.hidden = !text;
  }

  // -- views -------------------------------------------------------------------------------

  async function loadHealth() {
    const doc = await call("GET", "/v1/admin/health");
    const checks = Object.entries(doc.checks).map(([name, value]) =>
      el("span", { class: value === true ? "ok" : "bad" }, `${name}: ${value === true ? "ok" : value}`));
    clear($("health-summary")).append(
      el("p", {}, el("strong", { class: doc.status === "ready" ? "ok" : "bad", id: "health-status" }, doc.status),
        " ", ...checks.flatMap((c) => [c, " "])),
      el("p", {}, `stuck orders: ${doc.stuck_orders}`,
        doc.metrics ? "" : " (this process keeps no metrics registry: no outcomes or times)"),
    );
    table($("health-table"),
      ["component", "up", "consumers", "depth", "handled", "success rate", "outcomes", "timed",
        "mean ms", "p50 ms ≤", "p95 ms ≤", "p99 ms ≤"],
      doc.components.map((c) => {
        const handled = Object.values(c.outcomes).reduce((a, b) => a + b, 0);
        const up = c.up === null ? "-" : el("span", { class: c.up ? "ok" : "bad" }, c.up ? "up" : "DOWN");
        const outcomes = Object.entries(c.outcomes).map(([k, v]) => `${k} ${v}`).join(", ") || "-";
        return [c.component, up, c.consumers ?? "-", c.depth ?? "-", handled || "-", pct(c.success_rate),
          outcomes, c.processed || "-", num(c.mean_ms, 2), num(c.p50_ms, 1), num(c.p95_ms, 1), num(c.p99_ms, 1)];
      }));
    table($("health-dlq"), ["reason", "dead letters"],
      Object.entries(doc.dead_lettered).map(([reason, count]) => [reason, count]));
  }

  async function loadQueues() {
    const queues = await call("GET", "/v1/admin/queues");
    table($("queues-table"), ["queue", "consumed by", "depth", "consumers", "error"],
      queues.map((q) => [q.queue, q.component, q.depth ?? "-",
        q.consumers === 0 && q.component !== "dlq" ? el("span", { class: "bad" }, "0") : q.consumers ?? "-",
        q.error || ""]));
  }

  async function replay(reason) {
    const body = reason ? { reason } : {};
    const result = await call("POST", "/v1/admin/dlq/replay", body);
    showMessage("dlq", `replayed ${result.replayed} of ${result.selected.length} selected${reason ? " (" + reason + ")" : ""}`);
    await loadDlq();
  }

  async function loadDlq() {
    const include = $("dlq-replayed").checked ? "&include_replayed=true" : "";
    const letters = await call("GET", `/v1/admin/dlq?limit=500${include}`);
    table($("dlq-table"),
      ["id", "reason", "queue", "order", "trace", "attempts", "error", "age s", "replayed at", ""],
      letters.map((d) => [d.id, d.reason, d.queue, orderLink(d.order), d.trace_id || "-", d.attempts,
        d.error || "", num(d.age_s, 0), d.replayed_at || "",
        d.replayed_at ? "" : el("button", {
          type: "button", class: "replay", "data-reason": d.reason,
          on: { click: () => guard("dlq", () => replay(d.reason)) },
        }, "Replay this reason")]));
  }

  function resolveForm(s) {
    const as = el("select", { class: "resolve-as" },
      ...["rejected", "cancelled", "filled"].map((v) => el("option", { value: v }, v)));
    const reason = el("input", { type: "text", class: "resolve-reason", placeholder: "why (recorded)" });
    const price = el("input", { type: "text", class: "resolve-price", placeholder: "fill price", size: 9 });
    const leg = el("select", { class: "resolve-leg" },
      ...[["", "order"], ["sl", "SL leg"], ["tp", "TP leg"]].map(([v, t]) => el("option", { value: v }, t)));
    const go = el("button", { type: "button", class: "resolve", "data-order": s.order_id }, "Resolve");
    go.addEventListener("click", () => guard("stuck", async () => {
      const body = { as: as.value, reason: reason.value };
      if (price.value.trim()) body.price = price.value.trim();
      if (leg.value) body.leg = leg.value;
      const done = await call("POST", `/v1/admin/orders/${encodeURIComponent(s.order_id)}/resolve`, body);
      showMessage("stuck", `${done.order_id}: ${done.status_before} -> ${done.status} by ${done.operator}`);
      await loadStuck();
    }));
    return el("span", { class: "resolve-form" }, as, reason, price, leg, go);
  }

  async function loadStuck() {
    const older = $("stuck-older").value.trim();
    const query = older ? `?older_than_s=${encodeURIComponent(older)}` : "";
    const stuck = await call("GET", `/v1/admin/stuck${query}`);
    table($("stuck-table"),
      ["order", "account", "symbol", "side", "status", "waiting for", "silent s", "reserved margin", "resolve as"],
      stuck.map((s) => [orderLink(s.order_id), s.account_id, s.symbol, s.side, s.status,
        s.waiting_for.join(", "), num(s.silent_s, 0), s.reserved_margin, resolveForm(s)]));
  }

  function latency(stats) {
    if (!stats.count) return "-";
    return `${num(stats.p50_ms, 2)} / ${num(stats.p95_ms, 2)} / ${num(stats.p99_ms, 2)} / ${num(stats.max_ms, 2)} (n=${stats.count})`;
  }

  async function loadLp() {
    const since = $("lp-since").value.trim();
    const page = await call("GET", `/v1/admin/lp-quality${since ? "?since=" + encodeURIComponent(since) : ""}`);
    table($("lp-table"),
      ["lp", "requests", "answered", "first report ms p50/p95/p99/max", "fill ms (market) p50/p95/p99/max",
        "lots filled / requested", "fill ratio", "rejected", "slippage fills +/0/-", "pips mean (min .. max)",
        "USD total (mean)"],
      page.lps.map((q) => [q.lp, q.requests, q.answered, latency(q.first_report), latency(q.fill),
        `${num(q.lots_filled, 2)} / ${num(q.lots_requested, 2)}`, pct(q.fill_ratio),
        `${q.rejected} (${pct(q.reject_ratio)})`,
        `${q.slippage.count} (${q.slippage.favourable} / ${q.slippage.zero} / ${q.slippage.adverse})`,
        `${num(q.slippage.mean_pips, 3)} (${num(q.slippage.min_pips, 2)} .. ${num(q.slippage.max_pips, 2)})`,
        `${num(q.slippage.total_usd, 2)} (${num(q.slippage.mean_usd, 2)})`]));
    table($("lp-rejects"), ["lp", "reason", "rejects"],
      page.lps.flatMap((q) => Object.entries(q.rejects_by_reason).map(([r, n]) => [q.lp, r, n])));
  }

  function fieldText(fields) {
    return Object.entries(fields)
      .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
      .join(" ");
  }

  async function loadTrail() {
    const orderId = $("trail-order").value.trim();
    if (!orderId) {
      clear($("trail-summary")).append("enter an order id (or click one in another view)");
      clear($("trail-table"));
      return;
    }
    const trace = await call("GET", `/v1/admin/orders/${encodeURIComponent(orderId)}/trace`);
    clear($("trail-summary")).append(
      `${trace.lines.length} lines from ${trace.files_scanned} files; trace ids: ${trace.trace_ids.join(", ") || "-"}`
      + (trace.truncated ? " (truncated)" : ""));
    table($("trail-table"), ["time", "level", "component", "tag", "fields"],
      trace.lines.map((r) => [r.ts, el("span", { class: `level-${r.level.toLowerCase()}` }, r.level),
        r.component, r.tag, el("span", { class: "fields" }, fieldText(r.fields))]));
  }

  function openTrail(orderId) {
    $("trail-order").value = orderId;
    location.hash = "#trail";
    show("trail");
  }

  // -- the live feed: fetch() streaming, since EventSource cannot send the Authorization header

  function liveState(text) {
    clear($("live-state")).append(text);
  }

  function liveRow(event, data) {
    const body = $("live-table").tBodies[0];
    let payload;
    try {
      payload = JSON.parse(data);
    } catch (error) {
      payload = { kind: event, raw: data };
    }
    const order = payload.order || {};
    const row = el("tr", { class: "live-event" },
      el("td", {}, new Date().toISOString().slice(11, 23)),
      el("td", {}, event),
      el("td", {}, order.account_id || payload.account_id || "-"),
      el("td", {}, orderLink(payload.order_id)),
      el("td", {}, payload.kind || "-"),
      el("td", {}, payload.status || order.status || "-"),
      el("td", {}, payload.chain_seq ?? "-"));
    body.prepend(row);
    while (body.rows.length > LIVE_MAX_ROWS) body.deleteRow(body.rows.length - 1);
  }

  function parseSse(text, onEvent) {
    // text holds whole events separated by blank lines; returns what is left over
    const blocks = text.split(/\r?\n\r?\n/);
    const rest = blocks.pop();
    for (const block of blocks) {
      let event = "message";
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event = value;
        else if (field === "data") data.push(value);
      }
      if (data.length || event !== "message") onEvent(event, data.join("\n"));
    }
    return rest;
  }

  async function startLive() {
    stopLive();
    showProblem("live", null);
    const accounts = $("live-accounts").value.split(",").map((a) => a.trim()).filter(Boolean);
    const query = accounts.map((a) => `account_id=${encodeURIComponent(a)}`).join("&");
    const controller = new AbortController();
    live = { controller };
    table($("live-table"), ["received", "event", "account", "order", "kind", "status", "chain seq"], []);
    clear($("live-table").tBodies[0]);
    liveState("connecting");
    try {
      const response = await fetch(`/v1/stream${query ? "?" + query : ""}`, {
        headers: headers({ Accept: "text/event-stream" }),
        signal: controller.signal,
        cache: "no-store",
      });
      if (!response.ok) {
        const type = response.headers.get("Content-Type") || "";
        throw new Problem(response.status, type.includes("json") ? await response.json() : null);
      }
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer = parseSse(buffer + value, (event, data) => {
          if (event === "ready") liveState("following");
          else liveRow(event, data);
        });
      }
      liveState("ended by the server");
    } catch (error) {
      if (controller.signal.aborted) return;
      liveState("stopped");
      showProblem("live", error);
    } finally {
      if (live && live.controller === controller) live = null;
    }
  }

  function stopLive() {
    if (live) {
      live.controller.abort();
      live = null;
      liveState("stopped");
    }
  }

  // -- navigation ------------------------------------------------------------------------

  const loaders = { health: loadHealth, queues: loadQueues, dlq: loadDlq, stuck: loadStuck, lp: loadLp, trail: loadTrail };

  async function guard(view, action) {
    try {
      await action();
      showProblem(view, null);
    } catch (error) {
      showProblem(view, error);
    }
  }

  function refresh(view) {
    const loader = loaders[view];
    return loader ? guard(view, loader) : Promise.resolve();
  }

  function show(view) {
    if (!views.includes(view)) view = "health";
    current = view;
    for (const name of views) $(`view-${name}`).hidden = name !== view;
    for (const button of $("nav").querySelectorAll("button")) {
      button.classList.toggle("active", button.dataset.view === view);
    }
    if (timer) clearInterval(timer);
    timer = null;
    if (view === "health" || view === "queues") {
      timer = setInterval(() => { if (!document.hidden) refresh(current); }, AUTO_REFRESH_MS);
    }
    refresh(view);
  }

  function keyState() {
    const key = sessionStorage.getItem(KEY_STORE);
    const id = key ? key.split("_")[1] || "?" : null;
    clear($("key-state")).append(id ? `using key ${id}` : "no key: paste one (kept in this tab only)");
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("key-input").value.trim();
      if (key) sessionStorage.setItem(KEY_STORE, key);
      $("key-input").value = "";
      keyState();
      show(current);
    });
    $("key-forget").addEventListener("click", () => {
      sessionStorage.removeItem(KEY_STORE);
      stopLive();
      keyState();
      show(current);
    });
    for (const button of $("nav").querySelectorAll("button")) {
      button.addEventListener("click", () => {
        location.hash = `#${button.dataset.view}`;
        show(button.dataset.view);
      });
    }
    for (const button of document.querySelectorAll("button.refresh")) {
      button.addEventListener("click", () => refresh(button.dataset.refresh));
    }
    $("dlq-replayed").addEventListener("change", () => refresh("dlq"));
    $("dlq-replay-all").addEventListener("click", () => guard("dlq", () => replay(null)));
    $("stuck-older").addEventListener("change", () => refresh("stuck"));
    $("lp-since").addEventListener("change", () => refresh("lp"));
    $("trail-form").addEventListener("submit", (event) => {
      event.preventDefault();
      refresh("trail");
    });
    $("live-form").addEventListener("submit", (event) => {
      event.preventDefault();
      startLive();
    });
    $("live-stop").addEventListener("click", stopLive);
    keyState();
    show(location.hash.slice(1));
  });
})();
