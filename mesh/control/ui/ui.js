// The control plane's web page: polls the JSON API and redraws. No framework, no build step.
// With --token-reads the token comes from the URL fragment (#token=...) and is sent as X-Mesh-Token;
// the fragment never reaches a server, and nothing here stores the token.
"use strict";

const POLL_MS = 2000;
const SVG_NS = "http://www.w3.org/2000/svg";
const NODE_W = 180, NODE_H = 34, COL_W = 370, ROW_H = 74, PAD = 30;  // a column gap fits an edge label

function token() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  return params.get("token") || "";
}

async function getJson(path) {
  const headers = {};
  const t = token();
  if (t) headers["X-Mesh-Token"] = t;
  const response = await fetch(path, { headers, cache: "no-store" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(`${path}: ${response.status} ${body.error || response.statusText}`);
  return body;
}

// --- small DOM helpers (text only: nothing from the API is parsed as HTML) ---

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function fillTable(id, rows) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren(...rows);
}

const fmt = {
  rps: (v) => (v >= 10 ? v.toFixed(1) : v.toFixed(2)),
  pct: (v) => (v === null || v === undefined ? "–" : (v * 100).toFixed(1) + "%"),
  ms: (v) => (v === null || v === undefined ? "–" : v >= 100 ? v.toFixed(0) : v.toFixed(1)),
};

// --- topology graph: layered layout (column = longest path from a caller), edges as curves ---

function layout(nodes, edges) {
  const depth = new Map(nodes.map((n) => [n.id, 0]));
  for (let round = 0; round < nodes.length; round++) {  // longest path, bounded (cycles stop growing)
    let changed = false;
    for (const e of edges) {
      if (e.source === e.destination || !depth.has(e.source) || !depth.has(e.destination)) continue;
      const want = depth.get(e.source) + 1;
      if (want > depth.get(e.destination) && want < nodes.length) {
        depth.set(e.destination, want);
        changed = true;
      }
    }
    if (!changed) break;
  }
  const columns = new Map();
  for (const n of nodes) {
    const d = depth.get(n.id);
    if (!columns.has(d)) columns.set(d, []);
    columns.get(d).push(n);
  }
  const place = new Map();
  let rows = 1;
  for (const [d, column] of columns) {
    column.sort((a, b) => a.id.localeCompare(b.id));
    rows = Math.max(rows, column.length);
    column.forEach((n, i) => place.set(n.id, { x: PAD + d * COL_W, y: PAD + i * ROW_H }));
  }
  const width = PAD * 2 + Math.max(0, ...columns.keys()) * COL_W + NODE_W;
  const height = PAD * 2 + (rows - 1) * ROW_H + NODE_H + 20;
  return { place, width, height };
}

function drawGraph(topology) {
  const graph = document.getElementById("graph");
  const { place, width, height } = layout(topology.nodes, topology.edges);
  const w = Math.max(width, 300), h = Math.max(height, 80);
  graph.setAttribute("width", w);
  graph.setAttribute("height", h);
  graph.setAttribute("viewBox", `0 0 ${w} ${h}`);  // scales down with the window
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
  marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#607d8b" }));
  defs.append(marker);
  const parts = [defs];
  for (const e of topology.edges) {
    const a = place.get(e.source), b = place.get(e.destination);
    if (!a || !b) continue;
    const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x, y2 = b.y + NODE_H / 2;
    let d, lx, ly;
    if (x2 > x1) {
      const mx = (x1 + x2) / 2;
      d = `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`;
      lx = mx; ly = (y1 + y2) / 2 - 6;
    } else {  // a call back to an earlier column (or itself): loop below the boxes
      const bottom = Math.max(a.y, b.y) + NODE_H + 40;
      d = `M ${a.x + NODE_W / 2} ${a.y + NODE_H} C ${a.x + NODE_W / 2} ${bottom}, ${b.x + NODE_W / 2} ${bottom}, ${b.x + NODE_W / 2} ${b.y + NODE_H}`;
      lx = (a.x + b.x + NODE_W) / 2; ly = bottom - 8;
    }
    const cls = e.requests === 0 ? "edge idle" : e.error_rate > 0 ? "edge errors" : "edge";
    const group = svg("g", { class: cls, "data-source": e.source, "data-destination": e.destination, "data-rps": e.rps });
    group.append(svg("path", { d, "marker-end": "url(#arrow)" }));
    group.append(svg("text", { x: lx, y: ly }, `${fmt.rps(e.rps)} rps · ${fmt.pct(e.error_rate)} · p99 ${fmt.ms(e.p99_ms)} ms`));
    parts.push(group);
  }
  for (const n of topology.nodes) {
    const p = place.get(n.id);
    const group = svg("g", { class: n.id === "unknown" ? "node unknown" : "node", "data-node": n.id, transform: `translate(${p.x},${p.y})` });
    group.append(svg("rect", { width: NODE_W, height: NODE_H, rx: 6 }));
    const label = n.id === "unknown" ? "outside the mesh" : n.id;
    group.append(svg("text", { x: NODE_W / 2, y: NODE_H / 2 }, label));
    group.append(svg("title", {}, `${n.id}: ${n.sidecars} sidecar(s) scraped`));
    parts.push(group);
  }
  if (topology.nodes.length === 0) {
    parts.push(svg("text", { x: 20, y: 40, class: "muted" }, "no traffic seen yet (sidecars are scraped every " + topology.interval_s + " s)"));
  }
  graph.replaceChildren(...parts);

  document.getElementById("window").textContent = topology.window_s ? `(last ${topology.window_s.toFixed(1)} s)` : "";
  fillTable("edges", topology.edges.map((e) => {
    const versions = Object.entries(e.versions)
      .map(([v, t]) => `${v}: ${fmt.rps(t.rps)} rps, ${fmt.pct(t.error_rate)}, p99 ${fmt.ms(t.p99_ms)}`)
      .join("; ");
    return el("tr", { "data-source": e.source, "data-destination": e.destination },
      el("td", {}, e.source), el("td", {}, e.destination), el("td", { class: "num" }, fmt.rps(e.rps)),
      el("td", { class: "num" + (e.error_rate > 0 ? " bad" : "") }, fmt.pct(e.error_rate)),
      el("td", { class: "num" }, fmt.ms(e.p50_ms)), el("td", { class: "num" }, fmt.ms(e.p99_ms)),
      el("td", {}, versions), el("td", { class: "muted" }, e.reporter));
  }));
  const failing = topology.targets.filter((t) => t.error);
  document.getElementById("targets").textContent =
    `${topology.targets.length} sidecar(s) scraped every ${topology.interval_s} s` +
    (failing.length ? `; failing: ${failing.map((t) => `${t.sidecar} (${t.error})`).join(", ")}` : "");
}

function drawServices(body) {
  fillTable("services", body.services.map((s) => {
    const cls = s.total === 0 ? "muted" : s.healthy === s.total ? "ok" : s.healthy === 0 ? "bad" : "warn";
    return el("tr", { "data-service": s.name },
      el("td", {}, s.name), el("td", { class: cls }, `${s.healthy} / ${s.total}`),
      el("td", { class: "num" }, s.sidecars), el("td", {}, s.namespaces.join(", ")), el("td", { class: "muted" }, s.tags.join(", ")));
  }));
}

function drawStatus(body) {
  document.getElementById("config-version").textContent = `config version ${body.config_version}`;
  fillTable("sidecars", body.sidecars.map((s) => {
    const ack = s.in_sync ? el("span", { class: "ok" }, "ACKed") : s.last_nack && s.last_nack.version === s.version
      ? el("span", { class: "bad" }, "NACKed") : el("span", { class: "warn" }, "pending");
    return el("tr", { "data-sidecar": s.id },
      el("td", {}, s.id), el("td", {}, s.service), el("td", {}, s.version || "–"), el("td", {}, s.applied_version || "–"),
      el("td", {}, ack), el("td", { class: s.connected ? "ok" : "bad" }, s.connected ? "yes" : "no"),
      el("td", { class: "muted" }, s.last_nack ? `${s.last_nack.version}: ${s.last_nack.error}` : ""));
  }));
}

function drawRules(body) {
  fillTable("rules", body.rules.map((r) => {
    const notes = [];
    if (r.problem) notes.push(`${r.problem.path}: ${r.problem.message}`);
    for (const w of r.warnings) notes.push(`${w.path}: ${w.message}`);
    const cls = r.state === "valid" ? "ok" : r.state === "warnings" ? "warn" : "bad";
    return el("tr", { "data-rule": `${r.kind}/${r.namespace}/${r.name}` },
      el("td", {}, r.kind), el("td", {}, `${r.namespace}/${r.name}`), el("td", {}, r.resourceVersion),
      el("td", { class: cls }, r.state), el("td", {}, notes.join("\n")));
  }));
}

async function refresh() {
  const errors = [];
  const views = [
    ["/v1/mesh/topology", drawGraph], ["/v1/mesh/services", drawServices],
    ["/v1/mesh/status", drawStatus], ["/v1/mesh/rules", drawRules],
  ];
  await Promise.all(views.map(async ([path, draw]) => {
    try { draw(await getJson(path)); } catch (err) { errors.push(err.message); }
  }));
  const box = document.getElementById("error");
  box.hidden = errors.length === 0;
  box.textContent = errors.join("; ");
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
}

async function loop() {
  await refresh();
  setTimeout(loop, POLL_MS);
}

loop();
