// vibex dashboard: plain JavaScript served by the vibex binary; nothing is
// fetched from anywhere but this server. It reads the REST API (/api/v1)
// and follows the event stream (/api/v1/stream), resuming after a
// reconnect from the last event it saw.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { token: sessionStorage.getItem("vibex.token") || "", seq: 0, accounts: [], ws: null, retry: 500,
                feed: [], refreshTimer: null, scope: "read" };

// ---- the API -------------------------------------------------------------------------------------

async function api(method, path, body) {
  const opts = { method, headers: { Authorization: "Bearer " + state.token } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const res = await fetch("/api/v1" + path, opts);
  const data = await res.json().catch(() => ({}));
  if (res.status === 401) { signOut("Your token was not accepted: " + (data.error ? data.error.message : "")); throw new Error("unauthorised"); }
  if (!res.ok) throw new Error((data.error && data.error.message) || ("HTTP " + res.status));
  return data;
}

function banner(msg) {
  const b = $("#banner");
  b.textContent = msg || "";
  b.hidden = !msg;
}

// ---- formatting ----------------------------------------------------------------------------------

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const k of kids) if (k !== undefined && k !== null) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

function money(x, d = 2) {
  if (x === undefined || x === null || x === "") return "–";
  const n = Number(x);
  return Number.isFinite(n) ? n.toLocaleString(undefined, { minimumFractionDigits: d, maximumFractionDigits: d }) : String(x);
}
function signed(x) {
  const n = Number(x);
  return el("span", { class: n > 0 ? "up" : n < 0 ? "down" : "" }, (n > 0 ? "+" : "") + money(x));
}
function when(iso) { return iso ? iso.replace("T", " ").replace(/\.\d+Z$|Z$/, "") : ""; }
function rows(tbody, list, render, empty) {
  tbody.replaceChildren(...(list.length ? list.map(render) : [el("tr", {}, el("td", { colspan: 8, class: "hint" }, empty))]));
}

// ---- pages ---------------------------------------------------------------------------------------

async function loadAccounts() {
  const data = await api("GET", "/accounts");
  state.accounts = data.items;
  const box = $("#accounts");
  box.replaceChildren(...data.items.map(accountCard));
  const sel = $("#note-account");
  sel.replaceChildren(el("option", { value: "" }, "(no account)"), ...data.items.map((a) => el("option", { value: a.name }, a.name)));
}

function accountCard(a) {
  const status = a.paused ? el("span", { class: "pill warn" }, "paused") :
    el("span", { class: "pill " + (a.status === "running" ? "on" : "off") }, a.status);
  const controls = el("div", { class: "controls" },
    a.paused ? el("button", { class: "quiet", "data-action": "resume", "data-account": a.name, onclick: () => control(a.name, "resume") }, "Resume")
             : el("button", { class: "quiet", "data-action": "pause", "data-account": a.name, onclick: () => control(a.name, "pause") }, "Pause"),
    el("button", { class: "danger", "data-action": "flatten", "data-account": a.name, onclick: () => control(a.name, "flatten") }, "Flatten"));
  return el("div", { class: "card", "data-account": a.name },
    el("h3", {}, a.name, status),
    el("div", { class: "big", "data-field": "equity" }, money(a.equity), " USDT"),
    el("div", { class: "row" }, el("span", {}, a.mode + " · " + a.venue), el("span", {}, a.strategy || "")),
    el("div", { class: "row" }, el("span", {}, "positions " + (a.open_positions ?? 0)), el("span", {}, "decisions " + (a.decisions ?? 0))),
    a.reason ? el("div", { class: "error" }, a.reason) : null,
    controls);
}

async function control(name, action) {
  const what = { pause: "Pause the decisions of " + name + "? Positions, stops and targets stay.",
                 resume: "Resume the decisions of " + name + "?",
                 flatten: "Close every position and cancel every order of " + name + "?" }[action];
  if (!window.confirm(what)) return;
  try {
    await api("POST", `/accounts/${encodeURIComponent(name)}/${action}`);
    banner("");
  } catch (e) {
    banner(action + " " + name + ": " + e.message);
  }
  loadAccounts().catch(() => {});
  loadPositions().catch(() => {});
}

async function loadPositions() {
  const data = await api("GET", "/positions");
  rows($("#positions tbody"), data.items, (p) => el("tr", {},
    el("td", {}, p.account), el("td", {}, p.symbol), el("td", { class: p.side === "long" ? "up" : "down" }, p.side),
    el("td", {}, p.quantity), el("td", {}, money(p.entry_price, 4)), el("td", {}, money(p.mark_price, 4)),
    el("td", {}, signed(p.unrealized_pnl)),
    el("td", {}, p.exit_plan ? `stop ${money(p.exit_plan.stop_loss, 4)} · target ${money(p.exit_plan.take_profit, 4)}` : "–")),
    "no open positions");
}

async function loadOrders() {
  const [a, b] = await Promise.all([api("GET", "/orders?status=new&limit=100"), api("GET", "/orders?status=partially_filled&limit=100")]);
  rows($("#orders tbody"), a.items.concat(b.items), (o) => el("tr", {},
    el("td", {}, o.account), el("td", {}, o.symbol), el("td", {}, o.side), el("td", {}, o.type), el("td", {}, o.quantity || "all"),
    el("td", {}, o.stop_price || ""), el("td", {}, o.status),
    el("td", {}, el("button", { class: "quiet", onclick: () => cancelOrder(o) }, "Cancel"))), "no open orders");
}

async function cancelOrder(o) {
  if (!window.confirm(`Cancel ${o.type} ${o.side} ${o.symbol} of ${o.account}?`)) return;
  try { await api("POST", `/orders/${encodeURIComponent(o.client_order_id)}/cancel`); banner(""); }
  catch (e) { banner("cancel: " + e.message); }
  loadOrders().catch(() => {});
}

async function loadEquity() {
  const data = await api("GET", "/performance?points=300");
  const box = $("#equity");
  const names = Object.keys(data.curves);
  if (!names.length) { box.replaceChildren(el("p", { class: "hint" }, "no equity recorded yet")); return; }
  const W = 1000, H = 220, P = 30;
  let lo = Infinity, hi = -Infinity, t0 = Infinity, t1 = -Infinity;
  for (const n of names) for (const p of data.curves[n]) {
    const v = Number(p.equity), t = Date.parse(p.time);
    lo = Math.min(lo, v); hi = Math.max(hi, v); t0 = Math.min(t0, t); t1 = Math.max(t1, t);
  }
  if (hi === lo) { hi += 1; lo -= 1; }
  if (t1 === t0) t1 = t0 + 1;
  const colors = ["#5fa8ff", "#ffb74d", "#81c784", "#e57373", "#ba68c8"];
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  names.forEach((n, i) => {
    const pts = data.curves[n].map((p) => `${(P + (Date.parse(p.time) - t0) / (t1 - t0) * (W - 2 * P)).toFixed(1)},${(H - P - (Number(p.equity) - lo) / (hi - lo) * (H - 2 * P)).toFixed(1)}`);
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", pts.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", colors[i % colors.length]);
    line.setAttribute("stroke-width", "2");
    line.setAttribute("vector-effect", "non-scaling-stroke");
    line.setAttribute("data-account", n);
    svg.append(line);
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", P + 4); label.setAttribute("y", 16 + 16 * i);
    label.setAttribute("fill", colors[i % colors.length]); label.setAttribute("font-size", "13");
    label.textContent = `${n} ${money(data.curves[n][data.curves[n].length - 1].equity)}`;
    svg.append(label);
  });
  for (const [v, y] of [[hi, P], [lo, H - P]]) {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", W - P); t.setAttribute("y", y); t.setAttribute("fill", "#8a94a6");
    t.setAttribute("font-size", "12"); t.setAttribute("text-anchor", "end");
    t.textContent = money(v);
    svg.append(t);
  }
  box.replaceChildren(svg);
}

const list = (x) => (Array.isArray(x) ? x : []);

function feedItem(d) {
  const acts = list(d.decisions).filter((x) => x.action && x.action !== "hold")
    .map((x) => `${x.action} ${x.symbol}`).join(", ") || "hold";
  const why = d.rationale || (list(d.decisions).find((x) => x.rationale) || {}).rationale || d.error || "";
  const li = el("li", { "data-cycle": d.cycle_key, "data-account": d.account, onclick: () => showDecision(d) },
    el("div", { class: "meta" }, `${d.account} · ${when(d.started_at || (d.time_ms && new Date(d.time_ms).toISOString()))} · ${d.source || ""}${d.model ? " · " + d.model : ""}`),
    el("div", {}, el("strong", {}, acts), why ? " — " + why : ""));
  return li;
}

function renderFeed() {
  $("#feed").replaceChildren(...state.feed.slice(0, 200).map(feedItem));
  $("#feed-short").replaceChildren(...state.feed.slice(0, 8).map(feedItem));
}

async function loadDecisions() {
  const data = await api("GET", "/decisions?limit=50");
  state.feed = data.items;
  renderFeed();
}

async function showDecision(d) {
  let id = d.decision_id;
  try {
    if (!id) {
      const found = await api("GET", `/decisions?account=${encodeURIComponent(d.account)}&cycle_key=${encodeURIComponent(d.cycle_key)}&limit=1`);
      if (!found.items.length) { banner("that decision is not in the database yet"); return; }
      id = found.items[0].decision_id;
    }
    const x = await api("GET", "/decisions/" + id);
    const body = $("#detail-body");
    body.replaceChildren(
      el("h3", {}, `${x.account} · ${x.cycle_key}`),
      el("p", { class: "hint" }, `${x.source || ""} ${x.provider || ""} ${x.model || ""} · ${x.valid === undefined ? "no model answer to validate" : (x.valid ? "valid answer" : "invalid answer")} · ${x.tokens_in ?? 0}/${x.tokens_out ?? 0} tokens`),
      el("h4", {}, "Prompt"), el("pre", { id: "detail-prompt" }, x.prompt ? JSON.stringify(x.prompt, null, 2) : "(no model was asked)"),
      el("h4", {}, "Answer"), el("pre", { id: "detail-answer" }, x.raw_answer || JSON.stringify(x.parsed, null, 2)),
      el("h4", {}, "Validation"), el("pre", {}, JSON.stringify(x.validation, null, 2)),
      el("h4", {}, "Steps (ms)"), el("pre", {}, JSON.stringify(x.step_ms)),
      el("h4", {}, "Orders"), el("pre", {}, (x.orders || []).map((o) => `${o.kind || ""} ${o.side} ${o.quantity || ""} ${o.symbol} → ${o.status}`).join("\n") || "none"));
    $("#detail").showModal();
  } catch (e) { banner("decision: " + e.message); }
}

async function loadDiary() {
  const data = await api("GET", "/diary?limit=50");
  $("#diary").replaceChildren(...data.items.map((e) => el("li", { "data-id": e.diary_entry_id },
    el("div", { class: "meta" }, `${e.account || "—"} · ${e.author}${e.edited_by ? " · " + e.edited_by : ""} · ${when(e.created_at)}`),
    e.body)));
}

async function loadHealth() {
  let data;
  try { data = await api("GET", "/ready"); } catch (e) { banner("readiness: " + e.message); return; }
  rows($("#checks tbody"), data.checks, (c) => el("tr", {},
    el("td", {}, c.name), el("td", {}, el("span", { class: "pill " + (c.ok ? "on" : "off") }, c.state || (c.ok ? "ok" : "not ok"))),
    el("td", {}, c.detail || "")), "no checks");
}

async function loadResearch() {
  const [ex, bt] = await Promise.all([api("GET", "/experiments"), api("GET", "/backtests?limit=20")]);
  const boards = await Promise.all(ex.items.map((x) => api("GET", "/experiments/" + encodeURIComponent(x.name)).catch(() => null)));
  const box = $("#experiments");
  if (!ex.items.length) box.replaceChildren(el("p", { class: "hint" }, "no experiments"));
  else box.replaceChildren(...boards.filter(Boolean).map(leaderboard));
  rows($("#backtests tbody"), bt.items, (b) => {
    const r = b.report || {};
    const acc = r.accounts ? Object.values(r.accounts)[0] || {} : {};
    return el("tr", {}, el("td", {}, b.run_id), el("td", {}, b.outcome || "running"), el("td", {}, b.accounts),
      el("td", {}, `${b.data_from || ""} → ${b.data_to || ""}`), el("td", {}, acc.return_pct !== undefined ? money(acc.return_pct) + "%" : "–"),
      el("td", {}, acc.trades ?? "–"));
  }, "no backtests");
}

// One experiment: its variants ranked, with the verdict.
function leaderboard(r) {
  const pct = (x) => (x === undefined || x === null ? "–" : (x * 100).toFixed(3) + "%");
  // best first: the report's ranking when it gives one, else by mean return
  const rank = list(r.ranking).map((x) => (typeof x === "string" ? x : x && x.name));
  const pos = (v) => (rank.indexOf(v.name) >= 0 ? rank.indexOf(v.name) : Infinity);
  const variants = list(r.variants).slice().sort((a, b) => pos(a) - pos(b) || (b.mean_return ?? -Infinity) - (a.mean_return ?? -Infinity));
  const table = el("table", { class: "leaderboard", "data-experiment": r.experiment },
    el("thead", {}, el("tr", {}, ...["#", "Variant", "Cycles", "Mean return", "Sharpe", "PnL", "Win rate", "Valid", "Cost"].map((h) => el("th", {}, h)))),
    el("tbody", {}, ...variants.map((v, i) => el("tr", {},
      el("td", {}, i + 1), el("td", {}, v.name), el("td", {}, v.cycles ?? 0), el("td", {}, pct(v.mean_return)),
      el("td", {}, v.sharpe === undefined ? "–" : Number(v.sharpe).toFixed(2)), el("td", {}, signed(v.pnl ?? 0)),
      el("td", {}, pct(v.win_rate)), el("td", {}, pct(v.validity)), el("td", {}, money(v.cost ?? 0, 4))))));
  return el("div", {}, el("h3", {}, `${r.experiment} v${r.version}`), el("p", { class: "hint" }, r.statement || ""),
    el("div", { class: "scroll" }, table));
}

const loaders = { overview: [loadAccounts, loadEquity, loadPositions, loadOrders, loadDecisions], decisions: [loadDecisions],
                  diary: [loadAccounts, loadDiary], health: [loadHealth], research: [loadResearch] };

function currentTab() { return (location.hash || "#overview").slice(1); }

async function showTab() {
  const tab = loaders[currentTab()] ? currentTab() : "overview";
  document.querySelectorAll("[data-page]").forEach((s) => { s.hidden = s.dataset.page !== tab; });
  document.querySelectorAll("#tabs a").forEach((a) => a.classList.toggle("active", a.dataset.tab === tab));
  try { await Promise.all(loaders[tab].map((f) => f())); document.body.dataset.loaded = tab; }
  catch (e) { if (e.message !== "unauthorised") banner(e.message); }
}

// ---- the stream ----------------------------------------------------------------------------------

function connect() {
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/api/v1/stream");
  state.ws = ws;
  ws.onopen = () => {
    ws.send(JSON.stringify({ op: "auth", token: state.token }));
    ws.send(JSON.stringify({ op: "subscribe", topics: ["decisions", "orders", "fills", "positions", "equity", "diary", "accounts"],
                             since: state.seq }));
  };
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.type === "subscribed") { setLive(true); state.retry = 500; if (!state.seq) state.seq = msg.seq; }
    else if (msg.type === "event") { state.seq = msg.seq; onEvent(msg.topic, msg.data); }
    else if (msg.type === "gap") { showTab(); }
    else if (msg.type === "error") { banner("stream: " + msg.message); }
  };
  ws.onclose = () => {
    setLive(false);
    if (!state.token) return;
    setTimeout(connect, state.retry);
    state.retry = Math.min(state.retry * 2, 15000);
  };
  ws.onerror = () => {};
}

function setLive(on) {
  const p = $("#live");
  p.textContent = on ? "live" : "offline";
  p.className = "pill " + (on ? "on" : "off");
}

function refreshSoon() {
  if (state.refreshTimer) return;
  state.refreshTimer = setTimeout(() => {
    state.refreshTimer = null;
    if (currentTab() === "overview") Promise.all([loadAccounts(), loadPositions(), loadOrders(), loadEquity()]).catch(() => {});
  }, 700);
}

function onEvent(topic, d) {
  if (topic === "decisions") {
    state.feed.unshift(d);
    if (state.feed.length > 500) state.feed.length = 500;
    renderFeed();
    const first = $("#feed-short li");
    if (first) first.classList.add("new");
    refreshSoon();
  } else if (topic === "diary") {
    if (currentTab() === "diary") loadDiary().catch(() => {});
  } else {
    refreshSoon();
  }
}

// ---- signing in ----------------------------------------------------------------------------------

function signOut(why) {
  state.token = "";
  sessionStorage.removeItem("vibex.token");
  if (state.ws) state.ws.close();
  $("#app").hidden = true;
  $("#logout").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = why || "";
}

async function start(token) {
  state.token = token;
  const res = await fetch("/api/v1/auth/whoami", { headers: { Authorization: "Bearer " + token } });
  if (!res.ok) { signOut("That token was not accepted."); return; }
  const who = await res.json();
  state.scope = who.scope;
  sessionStorage.setItem("vibex.token", token);
  document.body.dataset.scope = who.scope;
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("#logout").hidden = false;
  await showTab();
  connect();
}

async function walletLogin() {
  const eth = window.ethereum;
  if (!eth) { $("#login-error").textContent = "No Ethereum wallet in this browser."; return; }
  try {
    const [address] = await eth.request({ method: "eth_requestAccounts" });
    const n = await (await fetch("/api/v1/auth/nonce", { method: "POST", body: JSON.stringify({ address }) })).json();
    if (!n.message) throw new Error(n.error ? n.error.message : "no nonce");
    const signature = await eth.request({ method: "personal_sign", params: [n.message, address] });
    const s = await (await fetch("/api/v1/auth/wallet", { method: "POST", body: JSON.stringify({ address, nonce: n.nonce, signature }) })).json();
    if (!s.token) throw new Error(s.error ? s.error.message : "sign-in failed");
    await start(s.token);
  } catch (e) { $("#login-error").textContent = e.message; }
}

$("#token-form").addEventListener("submit", (e) => { e.preventDefault(); start($("#token").value.trim()); });
$("#wallet-login").addEventListener("click", walletLogin);
$("#logout").addEventListener("click", () => signOut(""));
$("#note-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const body = $("#note-body").value.trim();
  if (!body) return;
  try {
    await api("POST", "/diary", { account: $("#note-account").value || undefined, body });
    $("#note-body").value = "";
    loadDiary();
  } catch (err) { banner("note: " + err.message); }
});
window.addEventListener("hashchange", showTab);

if (state.token) start(state.token); else signOut("");
