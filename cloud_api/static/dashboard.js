// The kedge fleet dashboard: the table from GET /api/v1/nodes, kept current by the
// server-sent events of GET /api/v1/events (read with fetch, so the admin token travels
// in a header, never in a URL), sparklines from /api/v1/nodes/{name}/health, and the
// newest pod smoke test from /api/v1/verify (run again with POST /api/v1/verify).
"use strict";

const HOUR = 3600;
const nodes = new Map();   // name -> summary
const series = new Map();  // name -> [{t, cpu, mem, temp}]
const expanded = new Set(); // boards whose failing checks are shown (kept across redraws)
let token = sessionStorage.getItem("kedge-token") || "";

function api(path, options = {}) {
  const headers = Object.assign({ Authorization: "Bearer " + token }, options.headers || {});
  return fetch(path, Object.assign({}, options, { headers }));
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function ago(t) {
  if (!t) return "never";
  const s = Math.max(0, Math.round(Date.now() / 1000 - t));
  if (s < 90) return s + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  if (s < 172800) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}

function pct(v) { return v === null || v === undefined ? "–" : v.toFixed(0) + " %"; }
function deg(v) { return v === null || v === undefined ? "–" : v.toFixed(1) + " °C"; }

function spark(points, key, max) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 120 26");
  const now = Date.now() / 1000;
  const xy = points.filter(p => p[key] !== null && p[key] !== undefined && p.t > now - HOUR)
    .map(p => [((p.t - (now - HOUR)) / HOUR) * 120, 25 - (Math.min(p[key], max) / max) * 24]);
  if (xy.length > 0) {
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", xy.map(([x, y]) => x.toFixed(1) + "," + y.toFixed(1)).join(" "));
    svg.append(line);
  }
  return svg;
}

function checksCell(n) {
  const c = n.checks;
  if (c.ok === null) return el("span", { class: "hint" }, "no report yet");
  if (c.failing.length === 0) return el("span", { class: "pass" }, "all pass");
  const list = el("ul");
  const details = el("details", {}, el("summary", { class: "fail" },
    c.failing.length + " failing: " + c.failing.join(", ")), list);
  details.addEventListener("toggle", async () => {
    if (details.open) expanded.add(n.node); else expanded.delete(n.node);
    if (!details.open || list.childElementCount) return;
    const r = await api("/api/v1/nodes/" + encodeURIComponent(n.node));
    if (!r.ok) return;
    const full = await r.json();
    for (const check of (full.check_report || { checks: [] }).checks) {
      if (!c.failing.includes(check.id)) continue;
      list.append(el("li", {}, el("b", {}, check.id), ": " + check.summary,
        check.remedy ? el("div", { class: "hint" }, "Remedy: " + check.remedy) : ""));
    }
  });
  if (expanded.has(n.node)) details.open = true;
  return details;
}

async function command(node, action) {
  if (action === "reset" && !confirm("Reset " + node + "? This removes its KubeEdge join.")) return;
  const out = document.getElementById("output");
  const box = el("div", { class: "result", "data-command": action }, node + ": " + action + " … sending");
  out.prepend(box);
  const r = await api("/api/v1/nodes/" + encodeURIComponent(node) + "/commands", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ action, args: {} }),
  });
  const sent = await r.json();
  if (!r.ok) { box.textContent = node + ": " + action + " not sent: " + sent.error.message; return; }
  box.textContent = node + ": " + action + " sent, waiting for the board…";
  const done = await (await api("/api/v1/nodes/" + encodeURIComponent(node) + "/commands/" + sent.id + "?wait=60")).json();
  box.textContent = node + ": " + action + " → " + done.status + (done.reason ? " (" + done.reason + ")" : "");
}

function actions(n) {
  const cell = el("td");
  for (const action of ["check", "fix", "join", "reset"]) {
    const allowed = action === "check" || n.allow_remote.includes(action);
    const b = el("button", { type: "button", "data-action": action, onclick: () => command(n.node, action) }, action);
    if (!allowed) { b.disabled = true; b.title = "not in the board's allow_remote"; }
    if (n.state !== "online") { b.disabled = true; b.title = "the board is " + n.state; }
    cell.append(b);
  }
  return cell;
}

// The join column: the board's first boot while it runs or is stuck, else its join phase.
function joinCell(n) {
  const fb = n.firstboot;
  if (!fb || fb.state === "done") return el("td", {}, n.join_phase || "–");
  return el("td", { class: "firstboot " + fb.state, "data-firstboot": fb.phase, title: fb.summary },
    "first boot: " + fb.phase + (fb.state === "running" ? "" : " (" + fb.state + ")"),
    el("div", { class: "hint" }, fb.check ? fb.check + ": " + fb.remedy : fb.summary));
}

function row(n) {
  const s = series.get(n.node) || [];
  const ready = n.ready === null ? "none" : String(n.ready);
  return el("tr", { "data-node": n.node, "data-state": n.state },
    el("td", {}, el("b", {}, n.node), el("div", { class: "hint" }, n.agent_version ? "agent " + n.agent_version : "")),
    el("td", { class: "state " + n.state }, n.state),
    el("td", { class: "seen", "data-t": n.last_seen || "" }, el("span", { class: "ago" }, ago(n.last_seen)),
      n.clock_ahead_s ? el("div", { class: "hint fail clock-ahead", title: "its reports are stored at their receive time" },
        "clock ahead " + Math.round(n.clock_ahead_s) + " s") : ""),
    el("td", { class: "ready-" + ready, title: n.not_ready_reason || "" },
      n.ready === null ? "not a node" : n.ready ? "Ready" : "NotReady",
      n.pods_total === null || n.pods_total === undefined ? ""
        : el("div", { class: "hint pods" }, n.pods_running + "/" + n.pods_total + " pods running")),
    joinCell(n),
    el("td", { class: "num" }, pct(n.cpu_percent), spark(s, "cpu", 100)),
    el("td", { class: "num" }, pct(n.memory_percent), spark(s, "mem", 100)),
    el("td", { class: "num" }, deg(n.temperature_c), spark(s, "temp", 100)),
    el("td", {}, checksCell(n)),
    actions(n));
}

function showVerify(v) {
  const summary = document.getElementById("verify-summary");
  const list = document.getElementById("verify-nodes");
  if (!v) return;
  const asked = Object.keys(v.nodes).length;
  summary.className = v.ok ? "pass" : "fail";
  summary.dataset.job = v.job;
  summary.textContent = v.image + ": " + v.running + " of " + asked + " Ready edge boards ran it · " + ago(v.finished_at);
  list.replaceChildren(...Object.entries(v.nodes).sort().map(([node, verdict]) =>
    el("li", { class: verdict.result, "data-node": node, title: verdict.reason },
      node + " " + verdict.result + (verdict.reason ? " — " + verdict.reason : ""))));
}

// Boards parked until the admin says yes or no (GET /api/v1/boards/pending).
async function loadPending() {
  const r = await api("/api/v1/boards/pending");
  if (!r.ok) return;
  const waiting = await r.json();
  const panel = document.getElementById("pending");
  panel.hidden = waiting.length === 0;
  document.getElementById("pending-count").textContent = waiting.length + " waiting for approval";
  document.getElementById("pending-boards").replaceChildren(...waiting.map(p =>
    el("li", { "data-pending": p.node_name },
      el("b", {}, p.node_name), " serial " + (p.serial || "–") + " · asked " + ago(p.last_seen) + " · ",
      p.refused ? el("span", { class: "fail" }, "refused")
        : p.approved ? el("span", { class: "pass" }, "approved: enrolls at its next try")
        : el("span", { class: "hint" }, p.reason),
      p.approved ? "" : el("button", { type: "button", "data-decide": "approve",
        onclick: () => decide(p.node_name, "approve") }, "approve"),
      p.refused ? "" : el("button", { type: "button", "data-decide": "refuse",
        onclick: () => decide(p.node_name, "refuse") }, "refuse"))));
}

async function decide(name, verdict) {
  if (verdict === "refuse" && !confirm("Refuse " + name + "? Asking again, it is told so.")) return;
  await api("/api/v1/boards/" + encodeURIComponent(name) + "/" + verdict, { method: "POST" });
  await loadPending();
}

async function loadVerify() {
  const r = await api("/api/v1/verify");
  if (r.ok) showVerify(await r.json());
}

async function runVerify() {
  const summary = document.getElementById("verify-summary");
  const r = await api("/api/v1/verify", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: "{}",
  });
  const answer = await r.json();
  summary.className = "hint";
  summary.textContent = r.ok ? answer.message + " …" : "not started: " + answer.error.message;
}

function render() {
  const body = document.querySelector("#nodes tbody");
  const sorted = [...nodes.values()].sort((a, b) => a.node.localeCompare(b.node));
  body.replaceChildren(...sorted.map(row));
  document.getElementById("empty").hidden = sorted.length > 0;
  const counts = {};
  for (const n of sorted) counts[n.state] = (counts[n.state] || 0) + 1;
  document.getElementById("counts").textContent =
    sorted.length + " boards · " + Object.entries(counts).map(([k, v]) => v + " " + k).join(" · ");
}

function remember(n) {
  const s = series.get(n.node) || [];
  s.push({ t: Date.now() / 1000, cpu: n.cpu_percent, mem: n.memory_percent, temp: n.temperature_c });
  series.set(n.node, s.filter(p => p.t > Date.now() / 1000 - HOUR));
  nodes.set(n.node, n);
}

async function load() {
  const r = await api("/api/v1/nodes?limit=10000");
  if (r.status === 401) { showLogin("That token was refused."); return false; }
  const page = await r.json();
  nodes.clear();
  for (const n of page.items) nodes.set(n.node, n);
  await Promise.all(page.items.map(async n => {
    const h = await api("/api/v1/nodes/" + encodeURIComponent(n.node) + "/health?step=60");
    if (!h.ok) return;
    const points = (await h.json()).points;
    series.set(n.node, points.map(p => ({ t: p.t, cpu: p.cpu_percent, mem: p.memory_percent, temp: p.temperature_c })));
  }));
  render();
  return true;
}

async function stream() {
  const live = document.getElementById("live");
  for (let delay = 1000; ; delay = Math.min(delay * 2, 30000)) {
    try {
      const r = await api("/api/v1/events");
      if (!r.ok) throw new Error("status " + r.status);
      live.className = "live on"; live.textContent = "● live";
      delay = 1000;
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const kind = (frame.match(/^event: (.*)$/m) || [])[1];
          const data = (frame.match(/^data: (.*)$/m) || [])[1];
          if (kind === "nodes") { JSON.parse(data).forEach(remember); render(); }
          else if (kind === "verify") { showVerify(JSON.parse(data)); }
          else if (kind === "resync") { await load(); }
        }
      }
    } catch (e) {
      // the service restarted or the network dropped: try again
    }
    live.className = "live off"; live.textContent = "reconnecting…";
    await new Promise(resolve => setTimeout(resolve, delay));
    await load();
  }
}

function showLogin(message) {
  document.getElementById("fleet").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = message || "";
}

async function open() {
  if (!token) { showLogin(""); return; }
  sessionStorage.setItem("kedge-token", token);
  if (!(await load())) return;
  await loadVerify();
  await loadPending();
  document.getElementById("login").hidden = true;
  document.getElementById("fleet").hidden = false;
  stream();
}

document.addEventListener("DOMContentLoaded", () => {
  // A link may carry the token in its fragment, which never reaches a server log.
  const m = location.hash.match(/token=([A-Za-z0-9_-]+)/);
  if (m) { token = m[1]; history.replaceState(null, "", location.pathname); }
  document.getElementById("verify-run").addEventListener("click", runVerify);
  document.getElementById("login").addEventListener("submit", e => {
    e.preventDefault();
    token = document.getElementById("token").value.trim();
    open();
  });
  setInterval(() => {
    for (const cell of document.querySelectorAll("td.seen")) {
      cell.querySelector(".ago").textContent = ago(Number(cell.dataset.t) || null);
    }
  }, 1000);
  setInterval(load, 30000);  // states that change with time alone (stale)
  setInterval(loadPending, 15000);
  open();
});
