// callpop live stats: renders the snapshots of /v1/stats/stream.
// Sign-in: the panel's session cookie of a supervisor (sign in at /agent),
// a loopback browser when no API key is configured, or an API key with the
// scope stats given in the fragment: /stats#key=<key> (it never reaches a
// server log: fragments are not sent).
"use strict";

const MATCHES = ["hit", "miss", "multiple", "anonymous", "invalid", "timeout", "error"];
const CHANNELS = ["voice", "chat", "email", "sms", "social", "callback"];
const CHANNEL_TEXT = { voice: "voice", chat: "chat", email: "e-mail", sms: "SMS", social: "social", callback: "callback" };
const SVG = "http://www.w3.org/2000/svg";
let updates = 0;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmt(n, digits) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  return n.toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

function setStatus(text, cls) {
  const s = document.getElementById("status");
  s.textContent = text;
  s.className = "status " + (cls || "");
}

function buildWindows() {
  const tpl = document.getElementById("window-body");
  for (const w of document.querySelectorAll(".window")) {
    w.appendChild(tpl.content.cloneNode(true));
    const shares = w.querySelector(".shares");
    for (const m of MATCHES) {
      const d = el("div", "share " + m);
      d.dataset.match = m;
      d.appendChild(el("div", "name", m));
      d.appendChild(el("div", "pct", "–"));
      shares.appendChild(d);
    }
    const chans = w.querySelector(".channels");
    for (const c of CHANNELS) {
      const d = el("div", "chan");
      d.dataset.channel = c;
      d.appendChild(el("div", "name", CHANNEL_TEXT[c]));
      d.appendChild(el("div", "count", "–"));
      chans.appendChild(d);
    }
  }
}

function drawChart(svg, values) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const max = Math.max(1, ...values);
  const w = 600 / Math.max(1, values.length);
  values.forEach((v, i) => {
    const h = (v / max) * 116;
    const r = document.createElementNS(SVG, "rect");
    r.setAttribute("x", String(i * w + 1));
    r.setAttribute("width", String(Math.max(1, w - 2)));
    r.setAttribute("y", String(120 - h));
    r.setAttribute("height", String(h));
    svg.appendChild(r);
  });
}

function renderWindow(node, win) {
  const f = (name, text) => { node.querySelector(`[data-f="${name}"]`).textContent = text; };
  f("cps", fmt(win.calls_per_second, 2));
  f("cache", win.cache_hit_ratio === null ? "–" : fmt(win.cache_hit_ratio * 100, 1) + " %");
  f("misses", fmt(win.budget_misses, 0));
  f("pops", fmt(win.pops_sent, 0));
  f("reconnects", fmt(win.reconnects, 0));
  drawChart(node.querySelector(".chart"), win.chart || []);
  const step = win.chart_step_seconds === 1 ? "second" : "minute";
  node.querySelector(".chart-label").textContent =
    `calls per ${step} · ${fmt(win.calls, 0)} calls in ${fmt(win.seconds, 0)} s`;
  for (const d of node.querySelectorAll(".share")) {
    const s = (win.matches || {})[d.dataset.match] || { count: 0, share: 0 };
    d.querySelector(".pct").textContent = fmt(s.share * 100, 0) + " %";
    d.title = `${d.dataset.match}: ${s.count}`;
  }
  for (const d of node.querySelectorAll(".chan")) {
    const n = (win.channels || {})[d.dataset.channel] || 0;
    d.querySelector(".count").textContent = fmt(n, 0);
    d.title = `${d.dataset.channel}: ${n}`;
  }
  const tb = node.querySelector(".crm tbody");
  tb.replaceChildren();
  for (const l of win.crm_latency || []) {
    const tr = el("tr");
    tr.appendChild(el("td", "", l.source));
    tr.appendChild(el("td", "num", fmt(l.requests, 0)));
    tr.appendChild(el("td", "num", fmt(l.p50_ms, 1)));
    tr.appendChild(el("td", "num", fmt(l.p99_ms, 1)));
    tb.appendChild(tr);
  }
}

function render(snap) {
  updates++;
  document.body.dataset.updates = String(updates);
  document.body.dataset.calls = String(snap.totals.calls);
  const pbx = document.getElementById("pbx");
  if (snap.pbx.kind === "none") {
    pbx.textContent = "none";
    pbx.className = "big";
  } else {
    pbx.textContent = snap.pbx.connected ? "connected" : "down";
    pbx.className = "big " + (snap.pbx.connected ? "ok" : "down");
  }
  document.getElementById("pbx-detail").textContent =
    `${snap.pbx.kind} · ${fmt(snap.pbx.reconnects, 0)} reconnects` + (snap.pbx.reason ? ` · ${snap.pbx.reason}` : "");
  document.getElementById("agents").textContent = fmt(snap.agents_connected, 0);
  const br = document.getElementById("breakers");
  br.replaceChildren();
  if (!snap.breakers.length) br.appendChild(el("span", "small", "none"));
  for (const b of snap.breakers) br.appendChild(el("span", "badge " + b.state, `${b.name}: ${b.state}`));
  renderWindow(document.getElementById("w-minute"), snap.minute);
  renderWindow(document.getElementById("w-hour"), snap.hour);
  const tb = document.querySelector("#calls tbody");
  tb.replaceChildren();
  for (const c of snap.calls) {
    const tr = el("tr");
    tr.appendChild(el("td", "num", new Date(c.at).toLocaleTimeString()));
    tr.appendChild(el("td", "num", c.number));
    tr.appendChild(el("td", "ch-" + (c.channel || "voice"), CHANNEL_TEXT[c.channel] || c.channel || "voice"));
    tr.appendChild(el("td", "m-" + c.match, c.match));
    tr.appendChild(el("td", "", c.queue || ""));
    tr.appendChild(el("td", "num", String(c.priority)));
    tr.appendChild(el("td", "num", fmt(c.ms, 1)));
    tb.appendChild(tr);
  }
  setStatus("live · " + new Date(snap.at).toLocaleTimeString(), "live");
}

// explain asks the snapshot endpoint why the stream was refused.
async function explain(headers) {
  try {
    const r = await fetch("/v1/stats", { headers, credentials: "same-origin" });
    if (r.status === 401 || r.status === 403) {
      setStatus(`refused (${r.status}): sign in as a supervisor at /agent, or open /stats#key=<API key with the scope stats>`, "bad");
      return true;
    }
  } catch (e) { /* offline: retried */ }
  return false;
}

// streamWithKey reads the SSE stream with fetch, sending the API key.
async function streamWithKey(key) {
  const headers = { Authorization: "Bearer " + key };
  for (;;) {
    try {
      const r = await fetch("/v1/stats/stream", { headers, cache: "no-store" });
      if (r.status === 401 || r.status === 403) { await explain(headers); return; }
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          if (data) render(JSON.parse(data));
        }
      }
    } catch (e) { /* reconnect below */ }
    setStatus("reconnecting…", "bad");
    await new Promise((res) => setTimeout(res, 2000));
  }
}

function streamWithCookie() {
  const es = new EventSource("/v1/stats/stream");
  es.addEventListener("stats", (ev) => render(JSON.parse(ev.data)));
  es.onerror = async () => {
    if (es.readyState === EventSource.CLOSED) {
      if (!(await explain({}))) setTimeout(streamWithCookie, 2000);
    } else {
      setStatus("reconnecting…", "bad");
    }
  };
}

document.addEventListener("DOMContentLoaded", () => {
  buildWindows();
  const key = new URLSearchParams(location.hash.slice(1)).get("key");
  if (key) streamWithKey(key); else streamWithCookie();
});
