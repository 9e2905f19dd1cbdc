// The dashboard page: polls /api/state, draws the chart on a canvas and the table itself.
// No libraries, nothing from elsewhere. Data reaches the page only through textContent,
// never as HTML, so a description or a diff cannot inject markup.
"use strict";

const COLORS = {
  keep: "#1a9850", keepEdge: "#0b3d1f", discard: "#8c96a0", crash: "#d62728",
  other: "#ff8c00", interrupted: "#9467bd", frontier: "#2b5bd7", baseline: "#555555", baselineEdge: "#222222",
  grid: "#e5e5e5", text: "#1f2328", muted: "#656d76",
};
const POLL_MS = 1000;

const state = {
  w: 0, sig: null, snap: null, workspaces: [],
  sortKey: "index", sortDir: 1, selected: null, detailSig: null, points: [],
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "title") node.title = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// ---------------------------------------------------------------- formatting

const fmt = (v, digits = 6) => (v === null || v === undefined || Number.isNaN(v) ? "—" : Number(v).toFixed(digits));
const signed = (v, digits = 6) => (v === null || v === undefined ? "—" : (v >= 0 ? "+" : "") + Number(v).toFixed(digits));
const intf = (v) => (v === null || v === undefined ? "" : Number(v).toLocaleString("en-US"));

function duration(s) {
  if (s === null || s === undefined) return "—";
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

// ---------------------------------------------------------------- polling

function readHash() {
  const m = /w=(\d+)/.exec(location.hash);
  state.w = m ? Number(m[1]) : 0;
}

async function poll() {
  try {
    const since = state.sig ? `&since=${encodeURIComponent(state.sig)}` : "";
    const res = await fetch(`/api/state?w=${state.w}${since}`, { cache: "no-store" });
    const body = await res.json();
    $("offline").hidden = true;
    $("live").classList.remove("stale");
    if (!res.ok) {
      showError(body.error || `the server answered ${res.status}`);
    } else {
      state.workspaces = body.workspaces;
      renderTabs();
      if (!body.unchanged) {
        if (body.rows_unchanged && state.snap) body.snapshot.rows = state.snap.rows;
        state.sig = body.sig;
        state.snap = body.snapshot;
        render();
      } else {
        renderRunning(); // the elapsed clock moves even when no file did
      }
    }
  } catch (err) {
    $("offline").hidden = false;
    $("live").classList.add("stale");
  }
  setTimeout(poll, POLL_MS);
}

function showError(text) {
  const box = $("error");
  box.textContent = text || "";
  box.hidden = !text;
}

// ---------------------------------------------------------------- rendering

function render() {
  const snap = state.snap;
  document.title = `autoresearch · ${snap.name}`;
  showError(snap.error);
  renderMeta(snap);
  renderCards(snap);
  renderRunning();
  renderTable();
  drawChart();
  if (state.selected !== null) refreshDetail();
}

function renderTabs() {
  const nav = $("workspaces");
  if (nav.childElementCount === state.workspaces.length) {
    [...nav.children].forEach((b, i) => b.classList.toggle("active", i === state.w));
    return;
  }
  nav.replaceChildren();
  if (state.workspaces.length < 2) return;
  state.workspaces.forEach((name, i) => {
    const b = el("button", { type: "button", class: i === state.w ? "active" : "" }, name);
    b.addEventListener("click", () => {
      location.hash = `w=${i}`;
    });
    nav.append(b);
  });
}

function renderMeta(snap) {
  const parts = [el("b", {}, snap.name), ` · ${snap.root}`];
  if (snap.branch) parts.push(" · branch ", el("b", {}, snap.branch), ` @ ${snap.head || "?"}`);
  if (snap.rows_branch && (snap.rows_branch !== snap.branch || (snap.branches || []).length > 1)) {
    parts.push(" · experiments of ", el("b", {}, snap.rows_branch), ` (${snap.rows.length} of ${snap.rows_total} rows)`);
  }
  parts.push(" · agent ", el("b", {}, snap.agent || "—"));
  if (snap.loop) parts.push(` (loop ${snap.loop.alive ? "running" : "not running"}${snap.loop.state ? ", " + snap.loop.state : ""})`);
  if (snap.config) parts.push(` · ${snap.config.template}, profile ${snap.config.profile}, budget ${snap.config.budget} s`);
  else parts.push(" · results only (no workspace config)");
  $("meta").replaceChildren(...parts);
}

function card(label, value, sub, id) {
  const attrs = { class: "card" };
  if (id) attrs.id = id;
  return el("div", attrs, el("div", { class: "label" }, label), el("div", { class: "value" }, value), sub ? el("div", { class: "sub" }, sub) : null);
}

function renderCards(snap) {
  const s = snap.summary;
  if (!s) {
    $("cards").replaceChildren();
    return;
  }
  // the experiments by outcome and the runs around them, in the words every view uses (History.tally)
  const counts = s.counts_text;
  // rates extrapolate: shown once they mean something (snapshot.RATE_MIN_EXPERIMENTS, RATE_MIN_SECONDS)
  const early = !s.rates_meaningful && (s.experiments_per_hour !== null || s.training_share !== null);
  const over = s.elapsed_seconds ? `over ${duration(s.elapsed_seconds)}` : "no timestamps";
  const cards = [
    card("baseline", fmt(s.baseline), s.baseline_runs > 1 ? `mean of ${s.baseline_runs} runs` : `${s.metric}, ${s.direction} is better`, "card-baseline"),
    card("frontier", fmt(s.frontier), s.frontier_commit ? `commit ${s.frontier_commit.slice(0, 7)}` : "", "card-frontier"),
    // new minus old, as every difference is shown: a win is negative when lower is better
    card("change", s.change === null ? "—" : signed(s.change),
      s.change_pct === null ? "frontier minus baseline" : `frontier minus baseline, ${signed(s.change_pct, 2)} %`, "card-change"),
    card("experiments", String(s.experiments), counts, "card-experiments"),
    card("experiments per hour", early ? "— (too early)" : s.experiments_per_hour === null ? "—" : s.experiments_per_hour.toFixed(1),
      early ? `${over}; ${s.rates_note.replace(/^too early: /, "")}`
        : s.runs_per_hour === null ? over : `${over}; ${s.runs_per_hour.toFixed(1)} runs per hour`, "card-rate"),
    card("training share", early ? "— (too early)" : s.training_share === null ? "—" : `${Math.round(100 * s.training_share)} %`,
      early || !s.time_split ? "of wall-clock" : s.time_split.text, "card-training"),
    card("noise σ", s.sigma === null ? "—" : fmt(s.sigma), s.sigma === null ? "nothing run twice yet" : `kept at P(better) ≥ ${s.p_keep}`),
  ];
  if (s.unsandboxed > 0) {  // runs without a sandbox: their scores are not protected (docs/trust.md)
    const warn = card("sandbox", "unsandboxed", `${s.unsandboxed} of ${s.runs} runs`, "card-sandbox");
    warn.classList.add("warn");
    cards.push(warn);
  }
  if (s.tokens_in !== null || s.cost_usd !== null) {
    cards.push(card("agent usage", s.cost_usd === null ? "—" : `$${s.cost_usd.toFixed(2)}`, `${intf(s.tokens_in || 0)} in · ${intf(s.tokens_out || 0)} out`));
  }
  $("cards").replaceChildren(...cards);
}

// `run --workers N`: one line per worker and what it trains
function renderWorkers() {
  const box = $("workers");
  const list = (state.snap && state.snap.workers) || [];
  box.hidden = list.length === 0;
  $("workers-list").replaceChildren(...list.map((w) => {
    const li = document.createElement("li");
    li.dataset.worker = w.worker;
    const parts = [`${w.worker}: ${w.commit ? w.commit.slice(0, 7) + " " : ""}${w.description}${w.kind && w.kind !== "experiment" ? " (" + w.kind + ")" : ""}`];
    const p = w.progress;
    if (p) {
      parts.push(`step ${p.step}`);
      if (typeof p.loss === "number") parts.push(`loss ${p.loss.toFixed(4)}`);
      if (p.evaluating) parts.push("evaluating");
    }
    if (w.started_at) parts.push(`running for ${duration(Date.now() / 1000 - w.started_at)}`);
    li.textContent = parts.join(" · ");
    return li;
  }));
}

function renderRunning() {
  renderWorkers();
  const box = $("running");
  const cur = state.snap && state.snap.running;
  if (!cur) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  box.classList.toggle("gone", !cur.alive);
  $("running-badge").textContent = cur.alive ? "running" : "interrupted";
  const head = `${cur.commit ? cur.commit.slice(0, 7) + " " : ""}${cur.description}${cur.kind && cur.kind !== "experiment" ? " (" + cur.kind + ")" : ""}`;
  $("running-title").textContent = head;
  const p = cur.progress;
  const pct = p && typeof p.progress === "number" ? p.progress : 0;
  $("running-bar").style.width = `${Math.max(0, Math.min(100, pct))}%`;
  const parts = [];
  if (!cur.alive) parts.push("its process is gone: interrupted (the next run records it as interrupted)");
  else if (!p) parts.push("starting…");
  else {
    parts.push(`step ${p.step}`);
    if (typeof p.progress === "number") parts.push(`${p.progress.toFixed(1)} %`);
    if (typeof p.loss === "number") parts.push(`loss ${p.loss.toFixed(4)}`);
    if (p.evaluating) parts.push("evaluating");
    else if (typeof p.remaining === "number") parts.push(`${Math.round(p.remaining)} s remaining`);
  }
  if (cur.started_at && cur.alive) parts.push(`running for ${duration(Date.now() / 1000 - cur.started_at)}`);
  if (cur.agent) parts.push(`agent ${cur.agent}`);
  $("running-text").textContent = parts.join(" · ");
}

// ---------------------------------------------------------------- table

const COLUMNS = [
  { key: "index", label: "run", num: true, get: (r) => r.index + 1 },
  { key: "number", label: "exp", num: true, get: (r) => (r.number === null ? "" : r.number) },
  { key: "commit", label: "commit", get: (r) => r.commit.slice(0, 7) },
  { key: "value", label: "metric", num: true, get: (r) => (r.measured ? fmt(r.value) : "—"), sortBy: (r) => (r.measured ? r.value : null) },
  { key: "delta", label: "Δ frontier", num: true, get: (r) => (r.delta === null ? "" : signed(r.delta)) },
  // what the row is (History.label): baseline, rerun (a measurement of the frontier, never a keep), interrupted, ...
  { key: "label", label: "status", cls: "status", get: (r) => r.label },
  { key: "kind", label: "kind", get: (r) => r.kind },
  { key: "description", label: "description", cls: "desc", get: (r) => (r.reason ? `${r.description} — ${r.reason}` : r.description) },
  { key: "seconds", label: "seconds", num: true, get: (r) => (r.seconds === null ? "" : r.seconds.toFixed(1)) },
  { key: "memory_gb", label: "mem GB", num: true, get: (r) => (r.memory_gb === null ? "" : r.memory_gb.toFixed(1)) },
  { key: "agent", label: "agent", get: (r) => r.agent },
  { key: "worker", label: "worker", get: (r) => r.worker || "" },
  { key: "tokens_in", label: "tokens in", num: true, get: (r) => intf(r.tokens_in) },
  { key: "tokens_out", label: "tokens out", num: true, get: (r) => intf(r.tokens_out) },
  { key: "cost_usd", label: "cost $", num: true, get: (r) => (r.cost_usd === null ? "" : r.cost_usd.toFixed(4)) },
];

function renderHead() {
  const metric = state.snap && state.snap.summary ? state.snap.summary.metric : "metric";
  const cells = COLUMNS.map((c) => {
    const th = el("th", { class: (c.num ? "num " : "") + (state.sortKey === c.key ? `sorted ${state.sortDir > 0 ? "asc" : "desc"}` : ""), "data-key": c.key },
      c.key === "value" ? metric : c.label);
    th.addEventListener("click", () => {
      if (state.sortKey === c.key) state.sortDir = -state.sortDir;
      else {
        state.sortKey = c.key;
        state.sortDir = 1;
      }
      renderTable();
    });
    return th;
  });
  $("head").replaceChildren(...cells);
}

function sortValue(col, r) {
  if (col.sortBy) return col.sortBy(r);
  const v = r[col.key];
  return v === undefined ? null : v;
}

function renderTable() {
  renderHead();
  const snap = state.snap;
  const rows = (snap && snap.rows) || [];
  const col = COLUMNS.find((c) => c.key === state.sortKey) || COLUMNS[0];
  const sorted = rows.slice().sort((a, b) => {
    const x = sortValue(col, a), y = sortValue(col, b);
    if (x === y) return (a.index - b.index) * state.sortDir;
    if (x === null || x === "") return 1; // empty cells last, either way
    if (y === null || y === "") return -1;
    return (x < y ? -1 : 1) * state.sortDir;
  });
  const trs = [];
  if (snap && snap.running && snap.running.alive) {
    const cur = snap.running;
    const tr = el("tr", { class: "status-running", "data-row": "running" },
      el("td", { class: "num" }, "…"), el("td", { class: "num" }, ""), el("td", {}, (cur.commit || "").slice(0, 7)),
      el("td", { class: "num" }, "—"), el("td", {}, ""), el("td", { class: "status" }, "running"), el("td", {}, cur.kind || ""),
      el("td", { class: "desc" }, cur.description), ...COLUMNS.slice(8).map(() => el("td", {}, "")));
    tr.addEventListener("click", () => openDetail("running"));
    if (state.selected === "running") tr.classList.add("selected");
    trs.push(tr);
  }
  for (const r of sorted) {
    const tds = COLUMNS.map((c) => {
      const td = el("td", { class: (c.num ? "num " : "") + (c.cls || "") }, c.get(r));
      if (c.key === "delta" && r.delta !== null) {
        const good = snap.summary.direction === "lower" ? r.delta < 0 : r.delta > 0;
        td.classList.add(good ? "delta-good" : "delta-bad");
      }
      return td;
    });
    const tr = el("tr", { class: `status-${r.label}`, "data-row": String(r.index) }, ...tds);
    if (state.selected === r.index) tr.classList.add("selected");
    tr.addEventListener("click", () => openDetail(r.index));
    trs.push(tr);
  }
  $("rows").replaceChildren(...trs);
  $("empty").hidden = rows.length > 0 || Boolean(snap && snap.error);
}

// ---------------------------------------------------------------- detail (diff + log)

async function openDetail(which) {
  state.selected = which;
  state.detailSig = null;
  [...$("rows").children].forEach((tr) => tr.classList.toggle("selected", tr.dataset.row === String(which)));
  $("detail").hidden = false;
  $("detail-title").textContent = "loading…";
  await refreshDetail();
  $("detail").scrollIntoView({ block: "nearest" });
}

async function refreshDetail() {
  const which = state.selected;
  if (which === null) return;
  // a live log follows every change; a finished experiment's diff only changes with the rows
  const live = which === "running" || (state.snap && which === state.snap.log_owner);
  const key = `${state.w}:${which}:${live ? state.sig : String(state.sig).split("~")[0]}`;
  if (state.detailSig === key) return;
  state.detailSig = key;
  let body;
  try {
    const res = await fetch(`/api/detail?w=${state.w}&row=${encodeURIComponent(which)}`, { cache: "no-store" });
    body = await res.json();
    if (!res.ok) throw new Error(body.error || `status ${res.status}`);
  } catch (err) {
    $("detail-title").textContent = String(err.message || err);
    $("diff").replaceChildren();
    $("log").replaceChildren();
    return;
  }
  if (state.selected !== which) return;
  const row = which === "running" ? null : (state.snap.rows || [])[which];
  const label = which === "running" ? "running experiment"
    : `run #${which + 1}${row && row.number !== null ? ` (experiment #${row.number})` : ""}`;
  $("detail-title").textContent = `${label} · ${body.commit ? body.commit.slice(0, 7) : "no commit"} · ${body.description}`;
  $("diff-note").textContent = body.diff.ok ? "" : body.diff.message;
  renderDiff(body.diff.ok ? body.diff.text : "");
  $("log-note").textContent = body.log.note || (body.log.available && !body.log.text ? "run.log is empty" : "");
  const logBox = $("log");
  logBox.textContent = body.log.available ? body.log.text : "";
  logBox.scrollTop = logBox.scrollHeight;
}

function renderDiff(text) {
  const box = $("diff");
  const spans = text.split("\n").map((line) => {
    let cls = "";
    if (line.startsWith("diff --git") || line.startsWith("+++") || line.startsWith("---") || line.startsWith("commit ")) cls = "file";
    else if (line.startsWith("+")) cls = "add";
    else if (line.startsWith("-")) cls = "del";
    else if (line.startsWith("@@")) cls = "hunk";
    return cls ? el("span", { class: cls }, line) : document.createTextNode(line + "\n");
  });
  box.replaceChildren(...spans);
}

// ---------------------------------------------------------------- chart

function limits(rows, s) {
  const measuredValues = rows.filter((r) => r.measured).map((r) => r.value);
  let anchor = rows.filter((r) => r.status === "keep" && r.measured).map((r) => r.value);
  if (s.baseline !== null) anchor.push(s.baseline);
  if (!anchor.length) anchor = measuredValues;
  let lo = Math.min(...anchor), hi = Math.max(...anchor);
  let floor = Math.max(Math.abs(hi) * 2e-3, 1e-6);
  if (s.sigma) floor = Math.max(floor, 4 * s.keep_bar);
  const span = Math.max(hi - lo, floor);
  const reach = 3 * span;
  const lower = s.direction === "lower";
  for (const v of measuredValues) {
    if (v > hi && v <= hi + reach) hi = Math.max(hi, v);
    if (v < lo && v >= lo - reach) lo = Math.min(lo, v);
  }
  lo -= (lower ? 0.12 : 0.25) * span;
  hi += (lower ? 0.25 : 0.12) * span;
  // the noise band around the frontier line is drawn whole (report.y_limits does the same)
  const line = rows.map((r) => r.frontier).filter((v) => v !== null && v !== undefined);
  const bar = s.sigma !== null ? s.keep_bar : null;
  if (line.length && bar) {
    const bandLo = Math.min(...line) - bar, bandHi = Math.max(...line) + bar;
    const room = 0.05 * (Math.max(hi, bandHi) - Math.min(lo, bandLo));
    lo = Math.min(lo, bandLo - room);
    hi = Math.max(hi, bandHi + room);
  }
  return [lo, hi];
}

function niceTicks(lo, hi, count) {
  const raw = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= raw) || raw;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-12; v += step) ticks.push(v);
  return { ticks, step };
}

function drawChart() {
  const canvas = $("chart");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  state.points = [];
  const snap = state.snap;
  const rows = (snap && snap.rows) || [];
  const s = snap && snap.summary;
  const pad = { left: 70, right: 20, top: 18, bottom: 36 };
  const plotW = width - pad.left - pad.right, plotH = height - pad.top - pad.bottom;
  ctx.font = "12px system-ui, sans-serif";
  const measuredRows = rows.filter((r) => r.measured);
  canvas.dataset.points = String(rows.length);
  // kept runs are those labelled keep: baseline runs and the frontier's re-runs are not keeps
  canvas.dataset.kept = String(rows.filter((r) => r.label === "keep" && r.measured).length);
  canvas.dataset.reruns = String(rows.filter((r) => r.label === "rerun").length);
  canvas.dataset.baseline = String(rows.filter((r) => r.label === "baseline").length);
  canvas.dataset.interrupted = String(rows.filter((r) => r.label === "interrupted").length);
  if (!s || !measuredRows.length) {
    ctx.fillStyle = COLORS.muted;
    ctx.textAlign = "center";
    ctx.fillText(rows.length ? "no measured experiments yet" : "no experiments yet", width / 2, height / 2);
    return;
  }
  const n = rows.length;
  const [lo, hi] = limits(rows, s);
  const X = (i) => pad.left + (i / (n + 1)) * plotW; // i = experiment number, 1-based
  const Y = (v) => pad.top + (1 - (v - lo) / (hi - lo)) * plotH;
  const lowerBetter = s.direction === "lower";

  // grid and axes
  ctx.strokeStyle = COLORS.grid;
  ctx.fillStyle = COLORS.muted;
  ctx.lineWidth = 1;
  const { ticks, step } = niceTicks(lo, hi, 6);
  const digits = Math.max(0, Math.min(6, -Math.floor(Math.log10(step)) + 1));
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const t of ticks) {
    const y = Y(t);
    ctx.beginPath(); ctx.moveTo(pad.left, y); ctx.lineTo(pad.left + plotW, y); ctx.stroke();
    ctx.fillText(t.toFixed(digits), pad.left - 6, y);
  }
  const xt = niceTicks(0, n + 1, Math.min(10, n + 1));
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const t of xt.ticks) {
    if (t !== Math.round(t)) continue;
    const x = X(t);
    ctx.beginPath(); ctx.moveTo(x, pad.top); ctx.lineTo(x, pad.top + plotH); ctx.stroke();
    ctx.fillText(String(t), x, pad.top + plotH + 5);
  }
  ctx.strokeStyle = "#999";
  ctx.strokeRect(pad.left, pad.top, plotW, plotH);
  ctx.fillText("run #", pad.left + plotW / 2, pad.top + plotH + 20);
  ctx.save();
  ctx.translate(14, pad.top + plotH / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textBaseline = "middle";
  ctx.fillText(`${s.metric} (${s.direction} is better)`, 0, 0);
  ctx.restore();

  ctx.save();
  ctx.beginPath();
  ctx.rect(pad.left, pad.top, plotW, plotH);
  ctx.clip();

  // noise band and the frontier after each run (History.series: the value the cards give)
  const front = rows.map((r, i) => [i + 1, r.frontier]).filter(([, v]) => v !== null && v !== undefined);
  if (front.length) {
    front.push([n + 1, front[front.length - 1][1]]);
    if (s.sigma !== null && s.keep_bar) {
      ctx.fillStyle = "rgba(43, 91, 215, 0.12)";
      for (let k = 0; k < front.length - 1; k++) {
        const [x0, v] = front[k], x1 = front[k + 1][0];
        ctx.fillRect(X(x0), Y(v + s.keep_bar), X(x1) - X(x0), Y(v - s.keep_bar) - Y(v + s.keep_bar));
      }
    }
    ctx.strokeStyle = COLORS.frontier;
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.moveTo(X(front[0][0]), Y(front[0][1]));
    for (let k = 1; k < front.length; k++) {
      ctx.lineTo(X(front[k][0]), Y(front[k - 1][1]));
      ctx.lineTo(X(front[k][0]), Y(front[k][1]));
    }
    ctx.stroke();
  }
  if (s.baseline !== null) {
    ctx.strokeStyle = COLORS.baseline;
    ctx.lineWidth = 1.2;
    ctx.setLineDash([6, 4]);
    ctx.beginPath(); ctx.moveTo(pad.left, Y(s.baseline)); ctx.lineTo(pad.left + plotW, Y(s.baseline)); ctx.stroke();
    ctx.setLineDash([]);
  }
  ctx.restore();

  const edgeY = lowerBetter ? pad.top + 8 : pad.top + plotH - 8;
  const offTop = pad.top + 22, offBottom = pad.top + plotH - 22;
  // discards, failures, kept
  rows.forEach((r, i) => {
    const x = X(i + 1);
    if (r.label === "discard" && r.measured) {
      // off the chart: a small triangle at the edge it went past, pointing that way
      const inside = r.value >= lo && r.value <= hi;
      const y = inside ? Y(r.value) : r.value > hi ? offTop : offBottom;
      ctx.fillStyle = "rgba(140, 150, 160, 0.55)";
      ctx.beginPath();
      if (inside) ctx.arc(x, y, 3, 0, 2 * Math.PI);
      else { const d = r.value > hi ? -1 : 1; ctx.moveTo(x, y + 4 * d); ctx.lineTo(x - 4, y - 3 * d); ctx.lineTo(x + 4, y - 3 * d); }
      ctx.fill();
      state.points.push({ x, y, r });
    } else if (r.label === "interrupted") {
      // stopped from outside: a hollow circle on the edge, not a crash
      ctx.strokeStyle = COLORS.interrupted;
      ctx.lineWidth = 2;
      ctx.beginPath(); ctx.arc(x, edgeY, 4.5, 0, 2 * Math.PI); ctx.stroke();
      state.points.push({ x, y: edgeY, r });
    } else if (r.label === "crash") {
      ctx.strokeStyle = COLORS.crash;
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.moveTo(x - 4, edgeY - 4); ctx.lineTo(x + 4, edgeY + 4); ctx.moveTo(x + 4, edgeY - 4); ctx.lineTo(x - 4, edgeY + 4);
      ctx.stroke();
      state.points.push({ x, y: edgeY, r });
    } else if (r.label === "invalid" || r.label === "noop") {
      ctx.strokeStyle = COLORS.other;
      ctx.lineWidth = 2;
      ctx.beginPath(); ctx.moveTo(x, edgeY - 5); ctx.lineTo(x, edgeY + 5); ctx.stroke();
      state.points.push({ x, y: edgeY, r });
    }
  });
  rows.forEach((r, i) => {
    if (!["keep", "baseline", "rerun"].includes(r.label) || !r.measured) return;
    const x = X(i + 1), y = Y(r.value);
    ctx.lineWidth = 1;
    ctx.beginPath();
    if (r.label === "rerun") { // a re-run of the frontier: a measurement of it, small in its colour
      ctx.fillStyle = COLORS.frontier;
      ctx.strokeStyle = COLORS.frontier;
      ctx.arc(x, y, 3, 0, 2 * Math.PI);
    } else if (r.label === "baseline") { // a baseline run: a diamond in the baseline's colour
      ctx.fillStyle = COLORS.baseline;
      ctx.strokeStyle = COLORS.baselineEdge;
      ctx.moveTo(x, y - 6); ctx.lineTo(x + 6, y); ctx.lineTo(x, y + 6); ctx.lineTo(x - 6, y); ctx.closePath();
    } else {
      ctx.fillStyle = COLORS.keep;
      ctx.strokeStyle = COLORS.keepEdge;
      ctx.arc(x, y, 5.5, 0, 2 * Math.PI);
    }
    ctx.fill(); ctx.stroke();
    state.points.push({ x, y, r });
  });
  // labels of kept changes, alternating above and below
  ctx.fillStyle = COLORS.keepEdge;
  ctx.font = "11px system-ui, sans-serif";
  ctx.textBaseline = "middle";
  (snap.changes || []).forEach((c, j) => {
    const x = X(c.index + 1), y = Y(c.value);
    let label = c.baseline ? "baseline" : c.description;
    if (label.length > 42) label = label.slice(0, 41) + "…";
    const right = x > pad.left + 0.7 * plotW;
    const dy = (j % 2 ? 14 : -12) * (lowerBetter ? 1 : -1);
    ctx.save();
    ctx.translate(x + (right ? -8 : 8), y + dy);
    ctx.rotate(((right ? 1 : -1) * 18 * Math.PI) / 180);
    ctx.textAlign = right ? "right" : "left";
    ctx.fillText(label, 0, 0);
    ctx.restore();
  });
  // legend
  ctx.font = "11px system-ui, sans-serif";
  const legend = [["kept", "keep"], ["discarded", "discard"], ["crashed", "crash"], ["invalid / no-op", "other"]];
  if (rows.some((r) => r.label === "interrupted")) legend.push(["interrupted", "interrupted"]);
  if (rows.some((r) => r.label === "rerun")) legend.push(["frontier re-run", "rerun"]);
  legend.push(["frontier", "frontier"], [s.baseline_runs > 1 ? `baseline (mean of ${s.baseline_runs} runs)` : "baseline", "baseline"]);
  if (s.sigma !== null) legend.push([`noise band ±${fmt(s.keep_bar, 4)}`, "band"]);
  let lx = pad.left + 10;
  let ly = lowerBetter ? pad.top + plotH - 12 : pad.top + 12;
  ctx.textAlign = "left";
  for (const [label, kind] of legend) {
    if (lx > pad.left + 10 && lx + 18 + ctx.measureText(label).width > pad.left + plotW - 10) {
      lx = pad.left + 10; // a narrow chart: the legend goes on in another line, towards the inside
      ly += lowerBetter ? -16 : 16;
    }
    ctx.fillStyle = kind === "band" ? "rgba(43, 91, 215, 0.25)" : COLORS[kind === "rerun" ? "frontier" : kind] || COLORS.muted;
    ctx.strokeStyle = ctx.fillStyle;
    ctx.lineWidth = 2;
    if (kind === "frontier" || kind === "baseline") { ctx.beginPath(); ctx.moveTo(lx, ly); ctx.lineTo(lx + 14, ly); ctx.stroke(); }
    if (kind === "baseline") { ctx.beginPath(); ctx.moveTo(lx + 7, ly - 4); ctx.lineTo(lx + 11, ly); ctx.lineTo(lx + 7, ly + 4); ctx.lineTo(lx + 3, ly); ctx.fill(); }
    else if (kind === "interrupted") { ctx.beginPath(); ctx.arc(lx + 7, ly, 4, 0, 2 * Math.PI); ctx.stroke(); }
    else if (kind === "band") ctx.fillRect(lx, ly - 5, 14, 10);
    else if (kind !== "frontier") { ctx.beginPath(); ctx.arc(lx + 7, ly, 4, 0, 2 * Math.PI); ctx.fill(); }
    ctx.fillStyle = COLORS.text;
    ctx.fillText(label, lx + 18, ly);
    lx += 18 + ctx.measureText(label).width + 14;
  }
}

function onChartMove(event) {
  const canvas = $("chart");
  const rect = canvas.getBoundingClientRect();
  const mx = event.clientX - rect.left, my = event.clientY - rect.top;
  let best = null, bestD = 10 * 10;
  for (const p of state.points) {
    const d = (p.x - mx) ** 2 + (p.y - my) ** 2;
    if (d < bestD) { best = p; bestD = d; }
  }
  const tip = $("tooltip");
  canvas.style.cursor = best ? "pointer" : "default";
  if (!best) { tip.hidden = true; return; }
  const r = best.r;
  const exp = r.number === null ? "" : ` · experiment #${r.number}`;
  tip.textContent = `run #${r.index + 1}${exp} ${r.commit.slice(0, 7)} · ${r.label}${r.kind !== "experiment" ? " (" + r.kind + ")" : ""} · ${r.measured ? fmt(r.value) : "no value"}\n${r.description}`;
  tip.style.whiteSpace = "pre-line";
  tip.hidden = false;
  tip.style.left = `${Math.min(best.x + 14, rect.width - 300)}px`;
  tip.style.top = `${best.y + 10}px`;
  return best;
}

function onChartClick(event) {
  const best = onChartMove(event);
  if (best) openDetail(best.r.index);
}

// ---------------------------------------------------------------- start

window.addEventListener("hashchange", () => {
  readHash();
  state.sig = null;
  state.selected = null;
  $("detail").hidden = true;
});
window.addEventListener("resize", () => drawChart());
document.addEventListener("DOMContentLoaded", () => {
  readHash();
  $("chart").addEventListener("mousemove", onChartMove);
  $("chart").addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
  $("chart").addEventListener("click", onChartClick);
  $("detail-close").addEventListener("click", () => {
    state.selected = null;
    $("detail").hidden = true;
    [...$("rows").children].forEach((tr) => tr.classList.remove("selected"));
  });
  poll();
});
