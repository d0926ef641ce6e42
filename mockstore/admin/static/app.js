// mockstore dashboard: plain JS, no build step. Every call goes to this page's own origin; the
// token travels in the cookie the server set when the page was opened with ?token=.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const MAX_ROWS = 200;

// Element builder: text only (never HTML from traffic), attributes and children.
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function setStatus(text, cls = "") {
  const s = $("#status");
  s.textContent = text;
  s.className = "status " + cls;
}

async function api(method, path, body) {
  const opts = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    opts.body = JSON.stringify(body);
    opts.headers["Content-Type"] = "application/json";
  }
  const r = await fetch(path, opts);
  const value = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) {
    const err = new Error(value.error || r.statusText);
    err.status = r.status;
    throw err;
  }
  return value;
}

function fail(e) {
  setStatus(e.message, "error");
}

// --- tabs ---------------------------------------------------------------------------

const loaders = {};

function showTab() {
  const name = (location.hash || "#deck").slice(1);
  document.querySelectorAll(".tab").forEach((t) => (t.hidden = t.id !== "tab-" + name));
  document.querySelectorAll("nav a[data-tab]").forEach((a) => a.classList.toggle("active", a.dataset.tab === name));
  if (loaders[name]) loaders[name]().catch(fail);
}

// --- mode ---------------------------------------------------------------------------

function showMode(mode) {
  document.querySelectorAll("#modes button").forEach((b) => b.classList.toggle("active", b.dataset.mode === mode));
  document.body.dataset.mode = mode;
}

async function setMode(mode) {
  const r = await api("PUT", "/admin/mode", { mode });
  showMode(r.mode);
}

// --- chaos --------------------------------------------------------------------------

async function loadChaos() {
  const state = await api("GET", "/admin/chaos");
  $("#chaos-all").checked = state.enabled;
  const body = $("#chaos-table tbody");
  body.replaceChildren(...state.rules.map((r) => el("tr", { "data-rule": r.id },
    el("td", {}, el("input", { type: "checkbox", class: "rule-toggle", checked: r.enabled,
      onchange: (ev) => api("POST", `/admin/chaos/rules/${encodeURIComponent(r.id)}/${ev.target.checked ? "enable" : "disable"}`)
        .then(loadChaos, fail) })),
    el("td", {}, r.id),
    el("td", {}, r.describe),
    el("td", { class: "applied" }, r.applied),
    el("td", {}, r.skipped),
    el("td", {}, el("button", { onclick: () => api("DELETE", `/admin/chaos/rules/${encodeURIComponent(r.id)}`).then(loadChaos, fail) }, "remove")),
  )));
}

async function addRule(ev) {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const rule = { effect: f.get("effect"), probability: Number(f.get("probability") || 1) };
  if (f.get("endpoint")) rule.endpoint = f.get("endpoint");
  const value = (f.get("value") || "").trim();
  const m = value.match(/^(\w+)?\s*([\d.]+)$/);
  if (m) {
    const key = m[1] || (rule.effect === "error" ? "status" : rule.effect === "latency" ? "ms" : "seconds");
    rule[key] = Number(m[2]);
  }
  await api("POST", "/admin/chaos/rules", rule);
  ev.target.reset();
  await loadChaos();
}

// --- live traffic -------------------------------------------------------------------

function addExchange(e) {
  const t = new Date(e.time * 1000);
  const row = el("tr", { class: "exchange" },
    el("td", {}, t.toLocaleTimeString()),
    el("td", {}, e.method),
    el("td", {}, e.host),
    el("td", {}, e.path),
    el("td", {}, e.template || ""),
    el("td", { class: "s" + String(e.status)[0] }, e.status),
    el("td", {}, el("span", { class: "src " + e.source.split("-")[0] }, e.source)),
    el("td", {}, e.latency_ms),
    el("td", {}, e.drift ? "⚠" : ""),
  );
  const body = $("#traffic tbody");
  body.prepend(row);
  while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
}

let lost = 0;

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/admin/stream`);
  ws.onopen = () => setStatus("live", "live");
  ws.onclose = () => { setStatus("disconnected: retrying", "error"); setTimeout(connect, 1000); };
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.type === "hello") return showMode(msg.mode);
    if (msg.lost) {
      lost += msg.lost;
      $("#lost").textContent = `${lost} events lost (the page fell behind)`;
    }
    for (const row of msg.exchanges || []) {
      const e = {};
      msg.fields.forEach((f, i) => (e[f] = row[i]));
      addExchange(e);
    }
    for (const e of msg.events || []) {
      if (e.type === "mode") showMode(e.mode);
      else if (e.type === "drift") loadDriftCount();
    }
  };
}

// --- endpoints ----------------------------------------------------------------------

async function loadEndpoints() {
  const eps = await api("GET", "/admin/endpoints");
  const list = $("#endpoint-list");
  const byHost = {};
  for (const e of eps) (byHost[e.host] = byHost[e.host] || []).push(e);
  list.replaceChildren(el("h2", {}, `Endpoints (${eps.length})`), ...Object.entries(byHost).flatMap(([host, items]) => [
    el("div", { class: "host" }, host),
    ...items.map((e) => el("a", { class: "ep", "data-id": e.id, onclick: () => showEndpoint(e.id) },
      `${e.method} ${e.template}`, el("span", { class: "type" }, `  ×${e.count}`))),
  ]));
  if (!eps.length) list.append(el("p", { class: "hint" }, "Nothing learned yet: send traffic through the proxy in learn mode."));
}

function histogram(buckets) {
  const w = 360, h = 100, n = buckets.length || 1, max = Math.max(1, ...buckets.map((b) => b.count));
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "hist");
  svg.setAttribute("width", w);
  svg.setAttribute("height", h + 14);
  buckets.forEach((b, i) => {
    const bw = w / n - 2, bh = (b.count / max) * h;
    const r = document.createElementNS(svg.namespaceURI, "rect");
    Object.entries({ x: i * (w / n), y: h - bh, width: bw, height: bh }).forEach(([k, v]) => r.setAttribute(k, v));
    r.append(Object.assign(document.createElementNS(svg.namespaceURI, "title"), { textContent: `~${b.ms} ms: ${b.count}` }));
    const t = document.createElementNS(svg.namespaceURI, "text");
    Object.entries({ x: i * (w / n), y: h + 12 }).forEach(([k, v]) => t.setAttribute(k, v));
    t.textContent = b.ms < 10 ? b.ms.toFixed(1) : Math.round(b.ms);
    svg.append(r, t);
  });
  return svg;
}

function schemaTree(name, s) {
  if (!s || typeof s !== "object") return el("div", {}, name);
  const type = s.type || (s.anyOf ? s.anyOf.map((x) => x.type).join(" | ") : "");
  const kids = [];
  if (s.properties) {
    const req = new Set(s.required || []);
    for (const [k, v] of Object.entries(s.properties)) kids.push(schemaTree(k + (req.has(k) ? "" : "?"), v));
  }
  if (s.items) kids.push(schemaTree("[items]", s.items));
  const label = [name + " ", el("span", { class: "type" }, Array.isArray(type) ? type.join(" | ") : type)];
  return kids.length ? el("details", { open: true }, el("summary", {}, ...label), ...kids) : el("div", { class: "leaf" }, ...label);
}

async function showEndpoint(id) {
  document.querySelectorAll(".ep").forEach((a) => a.classList.toggle("sel", a.dataset.id === id));
  const e = await api("GET", `/admin/endpoints/${encodeURIComponent(id)}`);
  const d = e.drift;
  const responses = Object.entries(e.schemas.responses || {});
  $("#endpoint-detail").replaceChildren(...[
    el("h2", {}, `${e.method} ${e.host}${e.template}`),
    el("p", {}, `${e.count} requests · p50 ${e.p50_ms} ms · p95 ${e.p95_ms} ms · p99 ${e.p99_ms} ms · EMA ${e.ema_ms} ms`),
    el("div", { class: "mix" }, "status mix: ", ...Object.entries(e.statuses).map(([s, n]) => el("span", { class: "s" + s[0] }, `${s}: ${n}`))),
    el("h2", {}, "Latency"), histogram(e.latency_histogram),
    el("h2", {}, "Drift"),
    el("p", {}, d ? `${d.alerts} alerts (${d.open} open) · ${d.drifted} of ${d.checked} checked responses drifted` : "drift watching is off"),
    el("h2", {}, "Schemas"),
    e.schemas.request ? schemaTree("request", e.schemas.request) : null,
    ...responses.map(([status, s]) => schemaTree(`response ${status}`, s)),
  ].filter((c) => c !== null));
}

// --- drift --------------------------------------------------------------------------

async function loadDriftCount() {
  const open = await api("GET", "/admin/drift-alerts?unresolved_only=true");
  $("#drift-count").textContent = open.length || "";
  if (!$("#tab-drift").hidden) await loadDrift();
}

async function loadDrift() {
  const openOnly = $("#drift-open").checked;
  const alerts = await api("GET", `/admin/drift-alerts?unresolved_only=${openOnly}`);
  $("#drift-table tbody").replaceChildren(...alerts.map((a) => el("tr", { "data-alert": a.id },
    el("td", {}, a.id ?? "new"),
    el("td", {}, a.endpoint + (a.kind === "request" ? " (request)" : ` → ${a.status}`)),
    el("td", {}, a.score),
    el("td", {}, a.count),
    el("td", {}, a.summary),
    el("td", { class: "state" }, a.resolved ? a.resolution : "open"),
    el("td", {}, a.resolved || a.id === null ? "" : [
      el("button", { class: "accept", onclick: () => resolve(a.id, true) }, "accept new shape"), " ",
      el("button", { onclick: () => resolve(a.id, false) }, "keep old"),
    ]),
  )));
  if (!alerts.length) $("#drift-table tbody").append(el("tr", {}, el("td", { colspan: 7, class: "hint" }, "no drift")));
}

async function resolve(id, accept) {
  await api("POST", `/admin/drift-alerts/${id}/resolve`, { accept });
  await loadDriftCount();
  await loadDrift();
}

// --- virtual data -------------------------------------------------------------------

async function loadResources() {
  let resources;
  try {
    resources = await api("GET", "/admin/resources");
  } catch (e) {
    if (e.status !== 409) throw e;
    $("#resource-list").replaceChildren(el("p", { class: "hint" }, e.message));
    $("#snapshot-table tbody").replaceChildren();
    return;
  }
  $("#resource-list").replaceChildren(el("h2", {}, "Resources"),
    ...resources.map((r) => el("a", { class: "ep", onclick: () => showRows(r.name) }, `${r.name}  ${r.path}`)));
  await loadSnapshots();
}

async function showRows(name) {
  const rows = await api("GET", `/admin/resources/${encodeURIComponent(name)}/rows`);
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  $("#resource-rows").replaceChildren(el("h2", {}, `${name} (${rows.length})`), el("table", {},
    el("thead", {}, el("tr", {}, ...cols.map((c) => el("th", {}, c)))),
    el("tbody", {}, ...rows.slice(0, 500).map((r) => el("tr", {}, ...cols.map((c) => el("td", {},
      typeof r[c] === "object" && r[c] !== null ? JSON.stringify(r[c]) : r[c])))))));
}

async function loadSnapshots() {
  const snaps = await api("GET", "/admin/snapshots");
  $("#snapshot-table tbody").replaceChildren(...snaps.map((s) => el("tr", { "data-snapshot": s.name },
    el("td", {}, s.name), el("td", {}, s.rows), el("td", {}, s.description),
    el("td", {},
      el("button", { onclick: () => api("POST", `/admin/snapshots/${encodeURIComponent(s.name)}/restore`).then(loadResources, fail) }, "restore"), " ",
      el("button", { onclick: () => api("DELETE", `/admin/snapshots/${encodeURIComponent(s.name)}`).then(loadSnapshots, fail) }, "delete")),
  )));
}

// --- start --------------------------------------------------------------------------

loaders.deck = loadChaos;
loaders.endpoints = loadEndpoints;
loaders.drift = loadDrift;
loaders.resources = loadResources;

window.addEventListener("DOMContentLoaded", () => {
  if (new URLSearchParams(location.search).has("token")) {
    history.replaceState(null, "", location.pathname + location.hash);  // the cookie keeps it
  }
  document.querySelectorAll("#modes button").forEach((b) => b.addEventListener("click", () => setMode(b.dataset.mode).catch(fail)));
  $("#chaos-all").addEventListener("change", (ev) => api("PUT", "/admin/chaos", { enabled: ev.target.checked }).then(loadChaos, fail));
  $("#chaos-form").addEventListener("submit", (ev) => addRule(ev).catch(fail));
  $("#drift-open").addEventListener("change", () => loadDrift().catch(fail));
  $("#snapshot-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = new FormData(ev.target).get("name");
    api("POST", "/admin/snapshots", { name }).then(() => { ev.target.reset(); return loadSnapshots(); }).catch(fail);
  });
  $("#vb-reset").addEventListener("click", () => api("POST", "/admin/reset").then(loadResources, fail));
  window.addEventListener("hashchange", showTab);
  showTab();
  connect();
  loadDriftCount().catch(fail);
  // chaos counters, at most a second old, while the deck is shown
  setInterval(() => { if (!$("#tab-deck").hidden) loadChaos().catch(fail); }, 1000);
});
