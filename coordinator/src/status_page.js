// The coordinator's status page: polls status.json every second and
// draws it. Every string from the server goes in as text, never as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const W = 560, H = 180, PAD = 36, SPAN_S = 600;

function text(id, value) {
  document.getElementById(id).textContent = value;
}

function flag(id, bad) {
  document.getElementById(id).classList.toggle("bad", bad);
}

function ms(v) {
  return v >= 100 ? v.toFixed(0) + " ms" : v >= 10 ? v.toFixed(1) + " ms" : v.toFixed(2) + " ms";
}

function duration(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : `${m}m ${s % 60}s`;
}

// Lines of `series` ([{values, color}]) over the last SPAN_S seconds.
function chart(id, points, series) {
  const svg = document.getElementById(id);
  svg.replaceChildren();
  const now = points.length ? points[points.length - 1].unix_ms : Date.now();
  let max = 0;
  for (const s of series) for (const v of s.values) max = Math.max(max, v);
  const top = max > 0 ? max * 1.1 : 1;
  const x = (t) => PAD + (W - PAD - 4) * (1 - (now - t) / (SPAN_S * 1000));
  const y = (v) => H - 16 - (H - 24) * (v / top);
  const add = (name, attrs, content) => {
    const el = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (content !== undefined) el.textContent = content;
    svg.appendChild(el);
  };
  add("line", { x1: PAD, y1: H - 16, x2: W - 4, y2: H - 16, stroke: "#aab1bf" });
  add("text", { x: 2, y: 12, "font-size": 10, fill: "#5b6475" }, top < 10 ? top.toFixed(1) : top.toFixed(0));
  add("text", { x: 2, y: H - 16, "font-size": 10, fill: "#5b6475" }, "0");
  add("text", { x: PAD, y: H - 2, "font-size": 10, fill: "#5b6475" }, "−10 min");
  add("text", { x: W - 30, y: H - 2, "font-size": 10, fill: "#5b6475" }, "now");
  for (const s of series) {
    const coords = points.map((p, i) => `${x(p.unix_ms).toFixed(1)},${y(s.values[i]).toFixed(1)}`);
    add("polyline", { points: coords.join(" "), fill: "none", stroke: s.color, "stroke-width": 1.5 });
  }
  svg.dataset.points = points.length;
  svg.dataset.peak = max;
}

function render(s) {
  text("replica", s.replica);
  text("version", s.version);
  text("state", s.draining ? "DRAINING" : "serving");
  text("uptime", duration(s.uptime_s));
  text("updated", new Date().toLocaleTimeString());
  const recent = s.points.slice(-10);
  const ended = recent.reduce((n, p) => n + p.committed + p.aborted, 0);
  const answered = recent.filter((p) => p.p50_ms > 0);
  text("throughput", recent.length ? (ended / recent.length).toFixed(1) : "0");
  text("p50", answered.length ? ms(Math.max(...answered.map((p) => p.p50_ms))) : "–");
  text("p99", answered.length ? ms(Math.max(...answered.map((p) => p.p99_ms))) : "–");
  text("live", s.live);
  text("committed-total", s.committed_total);
  text("aborted-total", s.aborted_total);
  text("in-doubt", s.in_doubt);
  text("hazards", s.hazards_total);
  text("unknown", s.unknown_answers_total);
  flag("in-doubt-card", s.in_doubt > 0);
  flag("hazards-card", s.hazards_total > 0);
  flag("unknown-card", s.unknown_answers_total > 0);
  chart("throughput-chart", s.points, [
    { values: s.points.map((p) => p.committed), color: "#1b7f3b" },
    { values: s.points.map((p) => p.aborted), color: "#b3261e" },
  ]);
  chart("latency-chart", s.points, [
    { values: s.points.map((p) => p.p50_ms), color: "#2757c5" },
    { values: s.points.map((p) => p.p99_ms), color: "#c56a27" },
  ]);
  const rows = s.participants.map((p) => {
    const tr = document.createElement("tr");
    tr.dataset.participant = p.name;
    const health = p.reachable ? "up" : "DOWN";
    for (const [value, cls] of [[p.name], [health, p.reachable ? "up" : "down"], [p.in_doubt], [p.last_error]]) {
      const td = document.createElement("td");
      td.textContent = value;
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    return tr;
  });
  document.querySelector("#participants tbody").replaceChildren(...rows);
}

async function poll() {
  try {
    const response = await fetch("status.json", { cache: "no-store" });
    if (!response.ok) throw new Error(`status.json: HTTP ${response.status}`);
    render(await response.json());
  } catch (err) {
    text("state", `unreachable (${err.message})`);
  }
}

poll();
setInterval(poll, 1000);
