// The page at /: polls GET /ui/overview every POLL_MS and redraws. No framework, no build step.
// Every text that comes from the server is set with textContent (never innerHTML): a headline
// "<script>..." is shown as text.
"use strict";

const POLL_MS = 1500;
const params = new URLSearchParams(location.search);
const state = {
  window: params.get("window") || "",
  pinned: params.getAll("key"),
  item: params.get("item"),
  charts: new Map(),   // key -> {el, plot, sig}
  urlMessages: [],
  notice: null,   // {text, until}: a message that outlives a few polls (e.g. why an ack failed)
  failures: 0,
};

// -- helpers ---------------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function safeUrl(url) {
  try {
    const u = new URL(url, location.href);
    return (u.protocol === "http:" || u.protocol === "https:") ? u.href : null;
  } catch (e) { return null; }
}

function link(text, url) {
  const href = url && safeUrl(url);
  return href ? el("a", {href, target: "_blank", rel: "noopener noreferrer", text}) : el("span", {text});
}

function fmtTime(value) {
  const d = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (isNaN(d)) return "";
  return d.toISOString().slice(11, 19);
}

function fmtDateTime(value) {
  const d = new Date(value);
  return isNaN(d) ? "" : d.toISOString().slice(0, 16).replace("T", " ");
}

function signed(x) { return (x >= 0 ? "+" : "") + x.toFixed(2); }

// Behind http.auth the data needs a bearer token: the user pastes one once per browser session.
const TOKEN_KEY = "finsent.token";

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? {"Authorization": `Bearer ${token}`} : {};
}

function askForToken(why) {
  const box = document.getElementById("token");
  const input = el("input", {type: "password", placeholder: "bearer token", "aria-label": "bearer token",
                             autocomplete: "off"});
  box.replaceChildren(el("span", {text: why}), " ",
    el("form", {onsubmit: ev => {
      ev.preventDefault();
      if (input.value.trim()) sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      box.replaceChildren();
      poll();
    }}, input, el("button", {type: "submit", text: "use token"})));
}

async function getJSON(url, options) {
  let resp;
  try {
    const opts = Object.assign({}, options || {});
    opts.headers = Object.assign({"Accept": "application/json"}, opts.headers || {}, authHeaders());
    resp = await fetch(url, opts);
  } catch (e) {
    throw new Error("the daemon does not answer (stopped or restarting?)");
  }
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) {
    let detail = body && body.detail;
    if (Array.isArray(detail)) detail = detail.map(d => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
    const err = new Error(detail || `HTTP ${resp.status}`);
    err.status = resp.status;
    throw err;
  }
  return body;
}

function setMessages(list) {
  if (state.notice && Date.now() < state.notice.until && !list.includes(state.notice.text)) list = [state.notice.text, ...list];
  const box = document.getElementById("messages");
  box.replaceChildren(...list.map(m => el("p", {text: m})));
}

function syncUrl() {
  const p = new URLSearchParams();
  if (state.window) p.set("window", state.window);
  for (const k of state.pinned) p.append("key", k);
  if (state.item) p.set("item", state.item);
  const q = p.toString();
  history.replaceState(null, "", q ? `?${q}` : location.pathname);
}

// -- charts ----------------------------------------------------------------------------------
function markerPlugin(markers) {
  return {
    hooks: {
      draw: [u => {
        const ctx = u.ctx;
        const [x0, x1] = [u.scales.x.min, u.scales.x.max];
        ctx.save();
        ctx.lineWidth = 2 * devicePixelRatio;
        for (const m of markers.current) {
          for (const [t, color] of [[m.at, "#c62828"], [m.ended, "#2e7d32"]]) {
            if (t === null || t === undefined || t < x0 || t > x1) continue;
            const x = u.valToPos(t, "x", true);
            ctx.strokeStyle = color;
            ctx.beginPath();
            ctx.moveTo(x, u.bbox.top);
            ctx.lineTo(x, u.bbox.top + u.bbox.height);
            ctx.stroke();
          }
        }
        ctx.restore();
      }],
    },
  };
}

function makeChart(series, container) {
  const markers = {current: series.markers};
  const width = Math.max(320, container.clientWidth - 12);
  const opts = {
    width, height: 180,
    legend: {show: false},
    cursor: {points: {show: false}},
    scales: {
      // the time axis also spans the alert markers (an alert can start after the last window's start)
      x: {time: true, range: (u, lo, hi) => {
        const ts = markers.current.flatMap(m => [m.at, m.ended]).filter(t => t !== null && t !== undefined && t >= lo);
        const a = Math.min(lo, ...ts), b = Math.max(hi, ...ts);
        return a === b ? [a - 60, b + 60] : [a, b + (b - a) * 0.03];
      }},
      mean: {range: [-1, 1]},
      count: {range: (u, lo, hi) => [0, Math.max(4, hi * 1.2)]},
    },
    axes: [
      {values: (u, ticks) => ticks.map(t => fmtTime(t).slice(0, 5))},
      {scale: "mean", values: (u, ticks) => ticks.map(t => t.toFixed(1)), size: 40},
      {scale: "count", side: 1, grid: {show: false}, size: 36},
    ],
    series: [
      {},
      {label: "stories", scale: "count", stroke: "#9fb4d6", fill: "rgba(159,180,214,0.45)",
       paths: uPlot.paths.bars({size: [0.7, 40]}), points: {show: false}},
      {label: "mean", scale: "mean", stroke: "#1f5fbf", width: 2, points: {show: true, size: 4}},
    ],
    plugins: [markerPlugin(markers)],
  };
  const plot = new uPlot(opts, chartData(series), container);
  return {plot, markers};
}

function chartData(series) {
  const xs = [], counts = [], means = [];
  for (const p of series.points) { xs.push(p.start); counts.push(p.count); means.push(p.mean); }
  return [xs, counts, means];
}

function renderCharts(list) {
  const root = document.getElementById("charts");
  const keep = new Set(list.map(s => s.key));
  for (const [key, c] of state.charts) {
    if (!keep.has(key)) { c.plot && c.plot.destroy(); c.el.remove(); state.charts.delete(key); }
  }
  list.forEach((s, i) => {
    let c = state.charts.get(s.key);
    if (!c) {
      const body = el("div", {class: "plot"});
      const last = el("span", {class: "last"});
      const why = el("span", {class: "why"});
      const card = el("div", {class: "chart", "data-key": s.key},
        el("div", {class: "head"}, el("h3", {text: s.key}), why, last), body);
      c = {el: card, body, last, why, plot: null, markers: null};
      state.charts.set(s.key, c);
    }
    if (root.children[i] !== c.el) root.insertBefore(c.el, root.children[i] || null);
    c.why.textContent = s.why === s.key ? "" : s.why;
    c.el.dataset.points = String(s.points.length);
    c.el.classList.toggle("alerting", s.markers.some(m => m.state === "firing"));
    const p = s.points[s.points.length - 1];
    c.last.textContent = p ? `last ${fmtTime(p.start)}: ${p.count} stories, mean ${signed(p.mean)}` : "";
    if (!s.points.length) {
      if (c.plot) { c.plot.destroy(); c.plot = null; }
      c.body.replaceChildren(el("div", {class: "empty", text: "no stories in this series yet"}));
      return;
    }
    if (!c.plot) {
      c.body.replaceChildren();
      const made = makeChart(s, c.body);
      c.plot = made.plot; c.markers = made.markers;
    } else {
      c.markers.current = s.markers;
      c.plot.setData(chartData(s));
    }
  });
}

function renderPinned() {
  const box = document.getElementById("pinned");
  if (!state.pinned.length) { box.replaceChildren(); return; }
  box.replaceChildren(el("span", {class: "muted", text: "pinned:"}), ...state.pinned.map(k =>
    el("span", {class: "tick"}, k, el("button", {type: "button", title: `unpin ${k}`, text: "×",
      onclick: () => { state.pinned = state.pinned.filter(x => x !== k); syncUrl(); poll(); }}))));
}

// -- alerts ----------------------------------------------------------------------------------
async function ack(fp, button) {
  button.disabled = true;
  try {
    await getJSON(`/alerts/${encodeURIComponent(fp)}/ack`, {method: "POST", headers: {"Content-Type": "application/json"},
                                                         body: JSON.stringify({by: "page"})});
    button.textContent = "acknowledged";
  } catch (e) {
    button.disabled = false;
    if (e.status === 401 || e.status === 403) {
      const msg = `acknowledging needs a token with scope 'write' (http.auth.tokens): ${e.message}; ` +
                  `or, on this machine: finsent alerts ack ${fp}`;
      setMessages([msg]);
      state.notice = {text: msg, until: Date.now() + 20000};
      askForToken("token with scope 'write':");
    } else {
      setMessages([`could not acknowledge: ${e.message}`]);
    }
  }
}

// The evidence's score: for a ticker's evidence, that ticker's own score and relevance.
function evidenceScore(e) {
  if (!e.ticker) return signed(e.score);
  const rel = e.relevance === null || e.relevance === undefined ? "" : `, relevance ${e.relevance.toFixed(2)}`;
  return `${e.ticker} ${signed(e.score)}${rel}`;
}

function renderAlerts(alerts) {
  const root = document.getElementById("alerts");
  if (!alerts.length) { root.replaceChildren(el("p", {class: "muted", text: "no alerts yet"})); return; }
  root.replaceChildren(...alerts.map(a => {
    const subject = a.labels.ticker || a.labels.topic || a.labels.source || a.labels.key || a.subject;
    const evidence = el("ul", {}, ...a.evidence.map(e =>
      el("li", {}, link(e.title, e.url), el("span", {class: "muted", text: ` ${e.source}, ${evidenceScore(e)}`}))));
    let action = null;
    if (a.state === "firing") {
      action = a.acked_at
        ? el("span", {class: "muted small", text: `acknowledged by ${a.acked_by || "?"}`})
        : el("button", {type: "button", class: "ack", onclick: ev => ack(a.fingerprint, ev.currentTarget), text: "acknowledge"});
    }
    const when = a.state === "resolved" && a.ends_at
      ? `fired ${fmtDateTime(a.starts_at)}, resolved ${fmtTime(a.ends_at)}`
      : `firing since ${fmtDateTime(a.starts_at)}` +
        (a.keep_firing_since ? ` (condition clear since ${fmtTime(a.keep_firing_since)}; kept firing while it may return)` : "");
    return el("div", {class: `alert-card ${a.state}`, "data-fingerprint": a.fingerprint, "data-rule": a.rule,
                      "data-subject": subject || ""},
      el("div", {class: "top"},
        el("h3", {}, el("span", {class: `sev ${a.labels.severity || ""}`, text: a.labels.severity || ""}), ` ${a.rule}: ${subject}`),
        el("span", {class: "state", text: a.state})),
      el("div", {class: "summary", text: a.annotations.summary || ""}),
      a.evidence.length ? evidence : null,
      el("div", {class: "meta", text: `${when} · model ${a.model_version || "?"} · ${a.notifications} notification(s)`}),
      action);
  }));
}

// -- the first model's training ---------------------------------------------------------------
function renderTraining(t) {
  const box = document.getElementById("training");
  if (!t) { box.replaceChildren(); box.hidden = true; return; }
  const bar = t.failed ? null : el("progress", {max: "100"});
  if (bar && t.percent !== null) bar.value = t.percent;  // no value: an indeterminate bar
  box.replaceChildren(el("p", {text: t.text}), bar);
  box.hidden = false;
}

// -- pipeline --------------------------------------------------------------------------------
function renderPipeline(p, missing) {
  const status = document.getElementById("status");
  status.textContent = p.status === "ok" ? "pipeline ok" : "pipeline not ready";
  status.className = `pill ${p.status === "ok" ? "ok" : "fail"}`;
  const rows = p.stages.map(s => el("div", {class: "stage"},
    el("span", {}, el("span", {class: s.ok ? "ok" : "bad", text: s.ok ? "● " : "✖ "}), s.name),
    el("span", {class: "detail", text: s.detail})));
  const kv = el("div", {class: "kv"});
  const add = (k, v) => kv.append(el("span", {class: "muted", text: k}), el("span", {text: v}));
  const labels = {ingested: "ingested", scored: "scored", trend_points: "trend points", alert_records: "evaluated",
                  notifications: "notifications"};
  for (const [k, label] of Object.entries(labels)) {
    if (k in p.totals) add(label, `${Math.round(p.totals[k])} total` + (k in p.rates ? ` · ${p.rates[k].toFixed(1)}/s` : ""));
  }
  for (const [k, v] of Object.entries(p.lag)) add(`${k} lag`, `${Math.round(v)} records`);
  if (p.outbox) add("outbox", `${p.outbox.pending} pending · ${p.outbox.delivered} delivered · ${p.outbox.dead} dead`);
  if (missing.length) add("not in this process", missing.join(", "));
  document.getElementById("pipeline").replaceChildren(...rows, kv);
}

// -- stories ---------------------------------------------------------------------------------
function pinKey(key) {
  if (!state.pinned.includes(key)) state.pinned.push(key);
  syncUrl(); poll();
}

// A chip per ticker, coloured by that ticker's own sentiment (the story's on records without
// per-ticker scores); dimmed when the story barely concerns it (relevance below the floor).
function storyChips(s) {
  const chips = s.chips || s.tickers.map(t => ({ticker: t, sentiment: s.sentiment, score: s.score,
                                                confidence: s.confidence, relevance: null, own: false, dim: false}));
  return chips.map(c => {
    const rel = (c.relevance === null || c.relevance === undefined ? "" : ` · relevance ${c.relevance.toFixed(2)}`) +
      (c.dim ? " (passing mention)" : "");
    const how = c.own
      ? `${c.sentiment} ${signed(c.score)} (${Math.round(c.confidence * 100)}%)` + rel
      : `story sentiment ${c.sentiment} ${signed(c.score)} (no per-ticker score: not named in what the model read)` + rel;
    return el("span", {class: `tick chip-${c.sentiment}${c.dim ? " dim" : ""}`, text: c.ticker,
                       "data-ticker": c.ticker, "data-score": c.score.toFixed(3),
                       "data-relevance": c.relevance === null || c.relevance === undefined ? null : c.relevance.toFixed(3),
                       title: `${c.ticker}: ${how} · click to chart ticker:${c.ticker}`,
                       onclick: () => pinKey(`ticker:${c.ticker}`)});
  });
}

function renderStories(stories) {
  const body = document.querySelector("#stories tbody");
  body.replaceChildren(...stories.map(s => {
    const title = el("td", {class: "title"}, link(s.title, s.url));
    title.append(" ", el("a", {href: `?item=${encodeURIComponent(s.id)}`, class: "muted small", text: "details",
      onclick: ev => { ev.preventDefault(); state.item = s.id; syncUrl(); showItem(); }}));
    if (s.copies) title.append(el("div", {class: "copies", text: `+${s.copies} near-duplicate${s.copies > 1 ? "s" : ""} folded (${s.copy_sources.join(", ")})`}));
    return el("tr", {"data-id": s.id},
      el("td", {class: "when", text: fmtDateTime(s.published_at)}),
      title,
      el("td", {text: s.source}),
      el("td", {}, ...storyChips(s)),
      el("td", {text: s.topic}),
      el("td", {class: `sent-${s.sentiment}`, text: `${s.sentiment} ${signed(s.score)} (${Math.round(s.confidence * 100)}%)`}),
      el("td", {class: "muted small", text: s.model_version}));
  }));
}

async function showItem() {
  const box = document.getElementById("item");
  if (!state.item) { box.replaceChildren(); return; }
  const close = el("button", {type: "button", text: "close", onclick: () => { state.item = null; syncUrl(); showItem(); }});
  try {
    const it = await getJSON(`/ui/item?id=${encodeURIComponent(state.item)}`);
    box.replaceChildren(el("h3", {}, link(it.item.title, it.item.url)), close,
      el("pre", {text: JSON.stringify(it, null, 2)}));
  } catch (e) {
    box.replaceChildren(el("p", {text: `story ${JSON.stringify(state.item)}: ${e.message}`}), close);
  }
}

// -- search ----------------------------------------------------------------------------------
let suggestTimer = null;
document.getElementById("q").addEventListener("input", ev => {
  clearTimeout(suggestTimer);
  const q = ev.target.value.trim();
  if (q.length < 1) return;
  suggestTimer = setTimeout(async () => {
    try {
      const found = await getJSON(`/ui/keys?q=${encodeURIComponent(q)}`);
      document.getElementById("suggestions").replaceChildren(...found.keys.map(k => el("option", {value: k})));
    } catch (e) { /* the submit shows the message */ }
  }, 200);
});

document.getElementById("search").addEventListener("submit", async ev => {
  ev.preventDefault();
  const q = document.getElementById("q").value.trim();
  try {
    const found = await getJSON(`/ui/keys?q=${encodeURIComponent(q)}`);
    if (!found.keys.length) { setMessages([`no trend key contains ${JSON.stringify(q)} (yet)`]); return; }
    const exact = found.keys.find(k => k.toLowerCase() === q.toLowerCase()) || found.keys[0];
    document.getElementById("q").value = "";
    pinKey(exact);
  } catch (e) {
    setMessages([e.message]);
  }
});

document.getElementById("window").addEventListener("change", ev => {
  state.window = ev.target.value; state.urlMessages = []; syncUrl(); poll();
});

// -- the loop --------------------------------------------------------------------------------
let pollTimer = null;
let inFlight = false;

function renderWindows(windows, current) {
  const sel = document.getElementById("window");
  if (sel.options.length !== windows.length) sel.replaceChildren(...windows.map(w => el("option", {value: w, text: w})));
  sel.value = current;
}

async function poll() {
  clearTimeout(pollTimer);
  if (inFlight) { pollTimer = setTimeout(poll, 200); return; }
  inFlight = true;
  const p = new URLSearchParams();
  if (state.window) p.set("window", state.window);
  for (const k of state.pinned) p.append("key", k);
  try {
    let data;
    try {
      data = await getJSON(`/ui/overview?${p}`);
    } catch (e) {
      if (state.window && /window/.test(e.message)) {
        // a bad ?window= in the address: say so, and show the default window instead
        state.urlMessages = [e.message];
        state.window = "";
        syncUrl();
        data = await getJSON(`/ui/overview?${new URLSearchParams(state.pinned.map(k => ["key", k]))}`);
      } else {
        throw e;
      }
    }
    state.failures = 0;
    renderWindows(data.windows, data.window);
    renderPinned();
    renderCharts(data.series);
    renderAlerts(data.alerts);
    renderPipeline(data.pipeline, data.missing);
    renderStories(data.stories);
    setMessages([...state.urlMessages, ...data.messages]);
    renderTraining(data.training);
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()} · ${data.keys_total} trend keys`;
  } catch (e) {
    state.failures += 1;
    setMessages([...state.urlMessages, e.message]);
    if (e.status === 401 || e.status === 403) askForToken("this daemon needs a token to show its data:");
    const status = document.getElementById("status");
    status.textContent = "no answer";
    status.className = "pill fail";
  } finally {
    inFlight = false;
    pollTimer = setTimeout(poll, POLL_MS);
  }
}

window.addEventListener("resize", () => {
  for (const c of state.charts.values()) {
    if (c.plot) c.plot.setSize({width: Math.max(320, c.body.clientWidth - 12), height: 180});
  }
});

showItem();
poll();
