--- vibex.backtest.html — the backtest report as one self-contained HTML
-- file: no network is needed to open it (styles, script and data are
-- inside). Equity and drawdown curves on a dated time axis, each symbol's
-- price with the trades marked (entries ▲/▼, exits ●), the per-account and
-- per-symbol tables. The charts are SVG drawn by the page's own script
-- from the JSON it carries.
local json = require "vibex.json"

local M = {}

local MAX_POINTS = 1500

-- At most MAX_POINTS points of a series (t, v): every k-th, keeping the
-- last, so the file stays small for a year of 5-minute bars.
local function thin(t, v)
  local n = #t
  local step = math.max(1, math.ceil(n / MAX_POINTS))
  local ot, ov = {}, {}
  for i = 1, n, step do ot[#ot + 1], ov[#ov + 1] = t[i], v[i] end
  if n > 0 and ot[#ot] ~= t[n] then ot[#ot + 1], ov[#ov + 1] = t[n], v[n] end
  return { t = ot, v = ov }
end

local function escape(s)
  return (tostring(s):gsub("[&<>\"]", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;" }))
end

local STYLE = [[
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;padding:16px;color:#1d232a;background:#fafbfc}
h1{font-size:20px;margin:0 0 4px}h2{font-size:17px;margin:24px 0 8px}h3{font-size:15px;margin:16px 0 6px}
.meta{color:#5b6570;font-size:13px}.card{background:#fff;border:1px solid #e1e4e8;border-radius:6px;padding:12px;margin:8px 0}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}td,th{padding:3px 10px;text-align:right;border-bottom:1px solid #eef0f2}
th{background:#f3f5f7;font-weight:600}td:first-child,th:first-child{text-align:left}.pos{color:#1a7f37}.neg{color:#cf222e}
svg{width:100%;height:auto;display:block}.chart{margin:6px 0}.axis{font-size:10px;fill:#5b6570}
.grid{stroke:#eef0f2}.eq{fill:none;stroke:#0969da;stroke-width:1.5}.dd{fill:#cf222e33;stroke:#cf222e;stroke-width:1}
.px{fill:none;stroke:#57606a;stroke-width:1}.kv{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:4px 16px}
.kv div span{color:#5b6570}]]

local SCRIPT = [[
(function(){
"use strict";
var D = JSON.parse(document.getElementById("data").textContent);
function arr(x){return Array.isArray(x)?x:[];} // an empty list comes as {}
var NS = "http://www.w3.org/2000/svg";
function el(name, attrs, parent){var e=document.createElementNS(NS,name);for(var k in attrs)e.setAttribute(k,attrs[k]);if(parent)parent.appendChild(e);return e;}
function day(ms){var d=new Date(ms);return d.toISOString().slice(0,10);}
function stamp(ms){var d=new Date(ms);return d.toISOString().slice(0,16).replace("T"," ");}
function chart(host, o){
  var W=900,H=o.h||220,L=64,R=10,T=10,B=24;
  var svg=el("svg",{viewBox:"0 0 "+W+" "+H,role:"img","aria-label":o.label,"class":"chart","data-points":String(o.t.length)},null);
  host.appendChild(svg);
  var t0=o.t0,t1=o.t1,lo=o.lo,hi=o.hi; if(hi<=lo){hi=lo+1;}
  var x=function(t){return L+(W-L-R)*(t-t0)/Math.max(1,t1-t0);}, y=function(v){return T+(H-T-B)*(hi-v)/(hi-lo);};
  for(var i=0;i<=4;i++){var v=lo+(hi-lo)*i/4,yy=y(v);el("line",{x1:L,x2:W-R,y1:yy,y2:yy,"class":"grid"},svg);
    var tx=el("text",{x:L-4,y:yy+3,"text-anchor":"end","class":"axis"},svg);tx.textContent=o.fmt?o.fmt(v):v.toFixed(2);}
  for(var j=0;j<=5;j++){var tt=t0+(t1-t0)*j/5,xx=x(tt);el("line",{x1:xx,x2:xx,y1:T,y2:H-B,"class":"grid"},svg);
    var lb=el("text",{x:xx,y:H-8,"text-anchor":j==0?"start":(j==5?"end":"middle"),"class":"axis"},svg);lb.textContent=day(tt);}
  var d="";for(var k=0;k<o.t.length;k++){d+=(k?"L":"M")+x(o.t[k]).toFixed(1)+" "+y(o.v[k]).toFixed(1);}
  if(o.area&&o.t.length){d+="L"+x(o.t[o.t.length-1]).toFixed(1)+" "+y(0).toFixed(1)+"L"+x(o.t[0]).toFixed(1)+" "+y(0).toFixed(1)+"Z";}
  el("path",{d:d,"class":o.cls},svg);
  (o.marks||[]).forEach(function(m){
    var c=el(m.shape==="exit"?"circle":"path",m.shape==="exit"?{cx:x(m.t),cy:y(m.v),r:3.5,fill:m.color}:
      {d:"M"+x(m.t)+" "+(y(m.v)+(m.up?-6:6))+"l-5 "+(m.up?9:-9)+"h10z",fill:m.color},svg);
    var ti=el("title",{},c);ti.textContent=m.title;
  });
  return svg;
}
function range(v){var lo=Infinity,hi=-Infinity;v.forEach(function(x){if(x<lo)lo=x;if(x>hi)hi=x;});if(lo===Infinity){lo=0;hi=1;}var p=(hi-lo)*0.05||1;return [lo-p,hi+p];}
arr(D.accounts).forEach(function(a){
  a.curve.t=arr(a.curve.t);a.curve.v=arr(a.curve.v);a.trades=arr(a.trades);a.symbols=arr(a.symbols);
  var host=document.getElementById("charts-"+a.account); if(!host||!a.curve.t.length)return;
  var r=range(a.curve.v);
  chart(host,{label:"equity of "+a.account,t:a.curve.t,v:a.curve.v,t0:D.t0,t1:D.t1,lo:r[0],hi:r[1],cls:"eq"});
  var peak=-Infinity,dd=a.curve.v.map(function(v){if(v>peak)peak=v;return peak>0?-(peak-v)/peak*100:0;});
  var m=Math.min.apply(null,dd.concat([-0.01]));
  chart(host,{label:"drawdown of "+a.account,t:a.curve.t,v:dd,t0:D.t0,t1:D.t1,lo:m*1.05,hi:0,cls:"dd",area:true,h:140,
    fmt:function(v){return v.toFixed(1)+"%";}});
  Object.keys(D.prices).sort().forEach(function(sym){
    var trades=a.trades.filter(function(tr){return tr.symbol===sym;});
    if(!trades.length&&!(a.symbols||[]).some(function(s){return s===sym;}))return;
    var p={t:arr(D.prices[sym].t),v:arr(D.prices[sym].v)},pr=range(p.v),marks=[];
    trades.forEach(function(tr){
      var up=tr.side==="long";
      marks.push({t:tr.opened_ms,v:tr.entry_price,up:up,color:up?"#1a7f37":"#cf222e",
        title:tr.side+" "+sym+" "+stamp(tr.opened_ms)+" at "+tr.entry_price});
      if(tr.closed_ms)marks.push({t:tr.closed_ms,v:tr.exit_price||tr.entry_price,shape:"exit",color:tr.net>=0?"#1a7f37":"#cf222e",
        title:"exit ("+tr.reason+") "+stamp(tr.closed_ms)+" net "+tr.net.toFixed(2)});
    });
    var h=document.createElement("h3");h.textContent=sym+" — "+trades.length+" trades";host.appendChild(h);
    chart(host,{label:"price of "+sym,t:p.t,v:p.v,t0:D.t0,t1:D.t1,lo:pr[0],hi:pr[1],cls:"px",marks:marks,
      fmt:function(v){return v.toPrecision(6);}});
  });
});
document.body.setAttribute("data-rendered","yes");
})();]]

local function n2(v, d)
  if v == nil then return "-" end
  return string.format("%." .. (d or 2) .. "f", v)
end

local function signed_cell(v, d)
  if v == nil then return "<td>-</td>" end
  return ('<td class="%s">%s</td>'):format(v > 0 and "pos" or v < 0 and "neg" or "", n2(v, d))
end

local function account_html(a)
  local out = {}
  local function w(s) out[#out + 1] = s end
  w(('<section class="card" id="account-%s"><h2>%s</h2><div class="kv">'):format(escape(a.account), escape(a.account)))
  local kv = {
    { "equity", n2(a.starting_equity) .. " → " .. n2(a.final_equity) }, { "return", n2(a.return_pct) .. "%" },
    { "trades", tostring(a.trades) }, { "win rate", a.win_rate and (n2(a.win_rate * 100, 1) .. "%") or "-" },
    { "avg profit", n2(a.avg_profit) }, { "total profit", n2(a.net) }, { "fees", n2(a.fees) }, { "funding", n2(a.funding) },
    { "max drawdown", n2(a.max_drawdown_pct) .. "% (" .. (a.max_drawdown_peak or "-") .. " → " .. (a.max_drawdown_trough or "-") .. ")" },
    { "sharpe", n2(a.sharpe) }, { "sortino", n2(a.sortino) }, { "calmar", n2(a.calmar) },
    { "exposure", n2(a.exposure_pct, 1) .. "%" },
    { "exits", ("signal %d, stop %d, target %d, liquidation %d"):format(a.reasons.signal, a.reasons.stop, a.reasons.target,
                                                                         a.reasons.liquidation) },
    { "decisions", ("%d cycles: %d taken, %d held, %d rejected, %d refused"):format(a.decisions.cycles, a.decisions.taken,
      a.decisions.held, a.decisions.rejected, a.decisions.refused) },
    { "model", ("%d calls, %d/%d tokens, cost %s"):format(a.model.calls, a.model.tokens_in, a.model.tokens_out, n2(a.model.cost, 4)) },
  }
  for _, p in ipairs(kv) do w(("<div><span>%s</span> %s</div>"):format(escape(p[1]), escape(p[2]))) end
  w("</div>")
  if #a.decisions.refused_by_rule > 0 then
    local parts = {}
    for _, x in ipairs(a.decisions.refused_by_rule) do parts[#parts + 1] = escape(x.reason) .. " " .. x.count end
    w('<p class="meta">Refused by the risk gate: ' .. table.concat(parts, ", ") .. "</p>")
  end
  w(('<div id="charts-%s"></div>'):format(escape(a.account)))
  w('<h3>Per symbol</h3><table class="symbols"><tr><th>symbol</th><th>trades</th><th>win rate</th><th>net</th><th>avg</th>'
    .. "<th>fees</th><th>funding</th><th>signal</th><th>stop</th><th>target</th><th>liquidation</th></tr>")
  for _, s in ipairs(a.symbols) do
    w(("<tr><td>%s</td><td>%d</td><td>%s</td>%s%s<td>%s</td><td>%s</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td></tr>")
      :format(escape(s.symbol), s.trades, s.win_rate and (n2(s.win_rate * 100, 1) .. "%") or "-", signed_cell(s.net),
        signed_cell(s.avg_profit), n2(s.fees), n2(s.funding), s.reasons.signal, s.reasons.stop, s.reasons.target,
        s.reasons.liquidation))
  end
  w("</table></section>")
  return table.concat(out, "\n")
end

--- The page. prices: {symbol = {t = {…}, c = {…}}} (the replayed closes);
-- trades: the closed trades (vibex.backtest.report.trades).
function M.render(r, col, prices, trades)
  local data = { t0 = nil, t1 = nil, accounts = {}, prices = {} }
  for _, a in ipairs(r.accounts) do
    local c = col.accounts[a.account]
    local list = {}
    for _, tr in ipairs(trades) do
      if tr.account == a.account then
        list[#list + 1] = { symbol = tr.symbol, side = tr.side, opened_ms = tr.opened_ms, closed_ms = tr.closed_ms,
                            entry_price = tr.entry_price, exit_price = tr.exit_price, net = tr.net, reason = tr.reason }
      end
    end
    local syms = {}
    for _, s in ipairs(a.symbols) do syms[#syms + 1] = s.symbol end
    data.accounts[#data.accounts + 1] = { account = a.account, curve = thin(c.t, c.equity), trades = list, symbols = syms }
    if c.t[1] and (not data.t0 or c.t[1] < data.t0) then data.t0 = c.t[1] end
    if c.t[#c.t] and (not data.t1 or c.t[#c.t] > data.t1) then data.t1 = c.t[#c.t] end
  end
  for sym, p in pairs(prices) do data.prices[sym] = thin(p.t, p.c) end
  data.t0, data.t1 = data.t0 or 0, data.t1 or 1
  local body = {}
  for _, a in ipairs(r.accounts) do body[#body + 1] = account_html(a) end
  local payload = json.encode(data):gsub("</", "<\\/")
  return table.concat {
    '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    "<title>vibex backtest", r.run_id and (" run " .. r.run_id) or "", "</title><style>", STYLE, "</style></head><body>",
    "<h1>Backtest", r.run_id and (" run " .. escape(r.run_id)) or "", "</h1>",
    '<p class="meta">', escape(r.from or "?"), " .. ", escape(r.to or "?"), " · ", escape(r.interval or ""), " · ",
    escape(table.concat(r.symbols or {}, ", ")), " · ", tostring(r.candles or 0), " candles, ", tostring(r.cycles or 0),
    " cycles · config ", escape(r.config or "-"), " · digest <code>", escape(r.digest:sub(1, 16)), "</code></p>",
    table.concat(body, "\n"),
    '<script type="application/json" id="data">', payload, "</script><script>", SCRIPT, "</script></body></html>\n",
  }
end

return M
