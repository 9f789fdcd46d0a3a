"""Route table of the fake venue: (method, path after /fapi/vN) -> handler,
security type and request weight, as the documentation lists them."""
import json
import math
import secrets
from decimal import Decimal

from exchange import VenueError, dstr, reject

INTERVALS = {"1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
             "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000, "8h": 28_800_000,
             "12h": 43_200_000, "1d": 86_400_000, "3d": 259_200_000, "1w": 604_800_000}


def ping(srv, acct, p):
    return {}


def server_time(srv, acct, p):
    return {"serverTime": srv.server_time()}


def exchange_info(srv, acct, p):
    return {"timezone": "UTC", "serverTime": srv.server_time(), "exchangeFilters": [],
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": srv.limits.weight_limit},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": srv.limits.order_limit}],
            "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "0"}],
            "symbols": [s.info() for s in srv.ex.symbols.values()]}


def klines(srv, acct, p):
    s = srv.ex.symbol(p.get("symbol", ""))
    iv = INTERVALS.get(p.get("interval"))
    if not iv:
        reject(-1120, "Invalid interval.")
    limit = int(p.get("limit", 500))
    if limit < 1 or limit > 1500:
        reject(-1130, "Data sent for parameter 'limit' is not valid.")
    now = srv.server_time()
    end = int(p["endTime"]) if p.get("endTime") else now
    if p.get("startTime"):
        start = int(p["startTime"])
        if start > end:
            reject(-1023, "Start time is greater than end time.")
        t = -(-start // iv) * iv
        out = []
        while t <= end and t <= now and len(out) < limit:
            out.append(srv.ex.kline(s, t, iv))
            t += iv
        return out
    last = min(end, now) // iv * iv
    first = last - (limit - 1) * iv
    return [srv.ex.kline(s, t, iv) for t in range(first, last + 1, iv)]


def ticker_price(srv, acct, p):
    if p.get("symbol"):
        s = srv.ex.symbol(p["symbol"])
        return {"symbol": s.name, "price": dstr(s.price), "time": srv.server_time()}
    return [{"symbol": s.name, "price": dstr(s.price), "time": srv.server_time()} for s in srv.ex.symbols.values()]


def book_ticker(srv, acct, p):
    s = srv.ex.symbol(p.get("symbol", ""))
    return {"symbol": s.name, "bidPrice": dstr(s.price - s.tick), "bidQty": "10", "askPrice": dstr(s.price + s.tick),
            "askQty": "12", "time": srv.server_time()}


def depth(srv, acct, p):
    s = srv.ex.symbol(p.get("symbol", ""))
    limit = int(p.get("limit", 500))
    if limit not in (5, 10, 20, 50, 100, 500, 1000):
        reject(-4021, "'%d' is not valid depth limit." % limit)
    bids = [[dstr(s.price - s.tick * i), str(i)] for i in range(1, limit + 1)]
    asks = [[dstr(s.price + s.tick * i), str(i)] for i in range(1, limit + 1)]
    return {"lastUpdateId": 1, "E": srv.server_time(), "T": srv.server_time(), "bids": bids, "asks": asks}


def premium_index(srv, acct, p):
    s = srv.ex.symbol(p.get("symbol", ""))
    t = srv.server_time()
    return {"symbol": s.name, "markPrice": dstr(s.price), "indexPrice": dstr(s.price),
            "estimatedSettlePrice": dstr(s.price), "lastFundingRate": dstr(s.funding_rate),
            "interestRate": "0.00010000", "nextFundingTime": (t // 28_800_000 + 1) * 28_800_000, "time": t}


def funding_at(s, t):
    """The rate settled at funding time t: the symbol's rate, moving with time (deterministic)."""
    k = t // 28_800_000
    rate = s.funding_rate * Decimal(1 + 0.5 * math.sin(k * 0.7))
    return dstr(rate.quantize(Decimal("0.00000001")))


def funding_rate(srv, acct, p):
    """As the venue: startTime/endTime (inclusive) and limit (default 100, at most 1000), oldest first."""
    s = srv.ex.symbol(p.get("symbol", ""))
    limit = int(p.get("limit", 100))
    if limit < 1 or limit > 1000:
        reject(-1130, "Data sent for parameter 'limit' is not valid.")
    now = srv.server_time()
    eight = 28_800_000
    end = min(int(p["endTime"]) if p.get("endTime") else now, now)
    if p.get("startTime"):
        start = int(p["startTime"])
        if start > end:
            reject(-1023, "Start time is greater than end time.")
        times = []
        t = -(-start // eight) * eight
        while t <= end and len(times) < limit:
            times.append(t)
            t += eight
    else:
        last = end // eight * eight
        times = [last - i * eight for i in reversed(range(limit))]
    return [{"symbol": s.name, "fundingTime": t, "fundingRate": funding_at(s, t), "markPrice": srv.ex.kline(s, t, 60_000)[1]}
            for t in times]


def mark_price_klines(srv, acct, p):
    """Mark price candles: the traded candles' prices moved by a small, time-dependent premium."""
    rows = klines(srv, acct, p)
    s = srv.ex.symbol(p.get("symbol", ""))
    out = []
    for r in rows:
        f = Decimal(1 + 0.0004 * math.sin(r[0] / 3_600_000))
        q = lambda x: dstr((Decimal(x) * f).quantize(s.tick))
        out.append([r[0], q(r[1]), q(r[2]), q(r[3]), q(r[4]), "0", r[6], "0", 0, "0", "0"])
    return out


def ticker_24hr(srv, acct, p):
    s = srv.ex.symbol(p.get("symbol", ""))
    return {"symbol": s.name, "lastPrice": dstr(s.price), "openPrice": dstr(s.price), "highPrice": dstr(s.price),
            "lowPrice": dstr(s.price), "volume": "1000", "quoteVolume": dstr(s.price * 1000),
            "priceChange": "0", "priceChangePercent": "0", "count": 10}


# ---- account -------------------------------------------------------------------

def _positions(srv, a, symbol=None):
    out = []
    for (sym, side), pos in sorted(a.positions.items()):
        if symbol and sym != symbol:
            continue
        s = srv.ex.symbols[sym]
        lev = a.leverage.get(sym, 20)
        out.append({"symbol": sym, "positionAmt": dstr(pos.amt), "entryPrice": dstr(pos.entry),
                    "markPrice": dstr(s.price), "unRealizedProfit": dstr(srv.ex.unrealized(pos, s)),
                    "liquidationPrice": "0", "leverage": str(lev), "maxNotionalValue": "1000000",
                    "marginType": a.margin_type.get(sym, "cross"), "isolatedMargin": "0",
                    "isAutoAddMargin": "false", "positionSide": side, "notional": dstr(pos.amt * s.price),
                    "updateTime": srv.server_time()})
    return out


def balance(srv, acct, p):
    a = srv.ex.acct(acct)
    up = sum((srv.ex.unrealized(pos, srv.ex.symbols[sym]) for (sym, _), pos in a.positions.items()), Decimal(0))
    return [{"accountAlias": "fake", "asset": "USDT", "balance": dstr(a.wallet), "crossWalletBalance": dstr(a.wallet),
             "crossUnPnl": dstr(up), "availableBalance": dstr(a.wallet + up), "maxWithdrawAmount": dstr(a.wallet),
             "marginAvailable": True, "updateTime": srv.server_time()}]


def account(srv, acct, p):
    a = srv.ex.acct(acct)
    b = balance(srv, acct, p)[0]
    return {"feeTier": 0, "canTrade": True, "canDeposit": True, "canWithdraw": True, "updateTime": 0,
            "totalWalletBalance": b["balance"], "totalUnrealizedProfit": b["crossUnPnl"],
            "totalMarginBalance": dstr(Decimal(b["balance"]) + Decimal(b["crossUnPnl"])),
            "availableBalance": b["availableBalance"], "maxWithdrawAmount": b["maxWithdrawAmount"],
            "assets": [{"asset": "USDT", "walletBalance": b["balance"], "unrealizedProfit": b["crossUnPnl"],
                        "availableBalance": b["availableBalance"]}],
            "positions": _positions(srv, a)}


def position_risk(srv, acct, p):
    return _positions(srv, srv.ex.acct(acct), p.get("symbol"))


def _own(srv, acct, rows, symbol=None):
    a = srv.ex.acct(acct)
    return [srv.ex.public(r) for r in rows if r["_account"] == a.name and (not symbol or r["symbol"] == symbol)]


def open_orders(srv, acct, p):
    rows = [o for o in srv.ex.orders.values() if o["status"] in ("NEW", "PARTIALLY_FILLED")]
    return _own(srv, acct, rows, p.get("symbol"))


def all_orders(srv, acct, p):
    srv.ex.symbol(p.get("symbol", ""))
    return _own(srv, acct, list(srv.ex.orders.values()), p.get("symbol"))


def query_order(srv, acct, p):
    srv.ex.symbol(p.get("symbol", ""))
    return srv.ex.public(srv.ex.find(acct, p))


def user_trades(srv, acct, p):
    srv.ex.symbol(p.get("symbol", ""))
    rows = _own(srv, acct, srv.ex.trades, p.get("symbol"))
    if p.get("orderId"):
        rows = [t for t in rows if str(t["orderId"]) == p["orderId"]]
    return rows


def income(srv, acct, p):
    return _own(srv, acct, srv.ex.income, p.get("symbol"))


def leverage(srv, acct, p):
    s = srv.ex.symbol(p.get("symbol", ""))
    try:
        lev = int(p.get("leverage", ""))
    except ValueError:
        lev = 0
    if lev < 1 or lev > 125:
        reject(-4028, "Leverage %s is not valid" % p.get("leverage"))
    srv.ex.acct(acct).leverage[s.name] = lev
    return {"leverage": lev, "maxNotionalValue": "1000000", "symbol": s.name}


def margin_type(srv, acct, p):
    s = srv.ex.symbol(p.get("symbol", ""))
    mt = p.get("marginType")
    if mt not in ("ISOLATED", "CROSSED"):
        reject(-1130, "Data sent for parameter 'marginType' is not valid.")
    a = srv.ex.acct(acct)
    cur = a.margin_type.get(s.name, "cross")
    want = "isolated" if mt == "ISOLATED" else "cross"
    if cur == want:
        reject(-4046, "No need to change margin type.")
    a.margin_type[s.name] = want
    return {"code": 200, "msg": "success"}


def get_dual(srv, acct, p):
    return {"dualSidePosition": srv.ex.acct(acct).dual}


def set_dual(srv, acct, p):
    a = srv.ex.acct(acct)
    want = p.get("dualSidePosition") == "true"
    if a.dual == want:
        reject(-4059, "No need to change position side.")
    if any(pos.amt for pos in a.positions.values()):
        reject(-4068, "Position side cannot be changed if there exists position.")
    a.dual = want
    return {"code": 200, "msg": "success"}


def new_order(srv, acct, p):
    return srv.ex.new_order(acct, p)


def modify_order(srv, acct, p):
    return srv.ex.modify(acct, p)


def cancel_order(srv, acct, p):
    return srv.ex.cancel(acct, p)


def cancel_all(srv, acct, p):
    s = srv.ex.symbol(p.get("symbol", ""))
    a = srv.ex.acct(acct)
    for o in list(srv.ex.orders.values()):
        if o["_account"] == a.name and o["symbol"] == s.name and o["status"] in ("NEW", "PARTIALLY_FILLED"):
            srv.ex.finish(o, "CANCELED")
    return {"code": 200, "msg": "The operation of cancel all open order is done."}


def batch_orders(srv, acct, p):
    raw = p.get("batchOrders")
    try:
        orders = json.loads(raw)
    except (TypeError, ValueError):
        reject(-1102, "Mandatory parameter 'batchOrders' was not sent, was empty/null, or malformed.")
    if not isinstance(orders, list) or not 1 <= len(orders) <= 5:
        reject(-4082, "Invalid number of batch place orders: %d" % (len(orders) if isinstance(orders, list) else 0))
    out = []
    for o in orders:
        try:
            out.append(srv.ex.new_order(acct, {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in o.items()}))
        except VenueError as e:
            out.append({"code": e.code, "msg": e.msg})
    return out


def listen_key(srv, acct, p):
    key = srv.ws.create_key(srv.ex.acct(acct).name) if srv.ws else secrets.token_hex(32)
    return {"listenKey": key}


def keepalive_key(srv, acct, p):
    if srv.ws and not srv.ws.keepalive(srv.ex.acct(acct).name):
        reject(-1125, "This listenKey does not exist.")
    return {}


def close_key(srv, acct, p):
    if srv.ws:
        srv.ws.close_key(srv.ex.acct(acct).name)
    return {}


def routes():
    return {
        ("GET", "/ping"): (ping, "NONE", 1),
        ("GET", "/time"): (server_time, "NONE", 1),
        ("GET", "/exchangeInfo"): (exchange_info, "NONE", 1),
        ("GET", "/klines"): (klines, "NONE", 5),
        ("GET", "/ticker/price"): (ticker_price, "NONE", 1),
        ("GET", "/ticker/bookTicker"): (book_ticker, "NONE", 1),
        ("GET", "/ticker/24hr"): (ticker_24hr, "NONE", 1),
        ("GET", "/depth"): (depth, "NONE", 5),
        ("GET", "/premiumIndex"): (premium_index, "NONE", 1),
        ("GET", "/fundingRate"): (funding_rate, "NONE", 1),
        ("GET", "/markPriceKlines"): (mark_price_klines, "NONE", 5),
        ("GET", "/account"): (account, "USER_DATA", 5),
        ("GET", "/balance"): (balance, "USER_DATA", 5),
        ("GET", "/positionRisk"): (position_risk, "USER_DATA", 5),
        ("GET", "/openOrders"): (open_orders, "USER_DATA", 1),
        ("GET", "/allOrders"): (all_orders, "USER_DATA", 5),
        ("GET", "/order"): (query_order, "USER_DATA", 1),
        ("GET", "/userTrades"): (user_trades, "USER_DATA", 5),
        ("GET", "/income"): (income, "USER_DATA", 30),
        ("POST", "/leverage"): (leverage, "TRADE", 1),
        ("POST", "/marginType"): (margin_type, "TRADE", 1),
        ("GET", "/positionSide/dual"): (get_dual, "USER_DATA", 30),
        ("POST", "/positionSide/dual"): (set_dual, "TRADE", 1),
        ("POST", "/order"): (new_order, "TRADE", 1),
        ("PUT", "/order"): (modify_order, "TRADE", 1),
        ("DELETE", "/order"): (cancel_order, "TRADE", 1),
        ("DELETE", "/allOpenOrders"): (cancel_all, "TRADE", 1),
        ("POST", "/batchOrders"): (batch_orders, "TRADE", 5),
        ("POST", "/listenKey"): (listen_key, "USER_STREAM", 1),
        ("PUT", "/listenKey"): (keepalive_key, "USER_STREAM", 1),
        ("DELETE", "/listenKey"): (close_key, "USER_STREAM", 1),
    }
