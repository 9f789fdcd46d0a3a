"""The fake venue's books: symbols and their filters, accounts, orders,
fills, positions and balances, with Decimal arithmetic throughout."""
import itertools
import math
from decimal import Decimal

TAKER = Decimal("0.0004")
MAKER = Decimal("0.0002")
ALGO = ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET")
TYPES = ("LIMIT", "MARKET") + ALGO


class VenueError(Exception):
    def __init__(self, status, code, msg):
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def reject(code, msg, status=400):
    raise VenueError(status, code, msg)


def dstr(d):
    """Decimal as the venue prints it (plain, no exponent)."""
    s = format(d.normalize(), "f") if d != 0 else "0"
    return s


class Symbol:
    def __init__(self, name, price, tick, step, min_qty, max_qty, min_notional, min_price="0", max_price="1000000",
                 mkt_max=None):
        self.name = name
        self.price = Decimal(price)
        self.base = Decimal(price)  # the candle generator's anchor; trades move self.price only
        self.tick, self.step = Decimal(tick), Decimal(step)
        self.min_qty, self.max_qty = Decimal(min_qty), Decimal(max_qty)
        self.min_price, self.max_price = Decimal(min_price), Decimal(max_price)
        self.mkt_max = Decimal(mkt_max or max_qty)
        self.min_notional = Decimal(min_notional)
        self.mult_up, self.mult_down = Decimal("1.1500"), Decimal("0.8500")
        self.funding_rate = Decimal("0.00010000")

    def info(self):
        return {
            "symbol": self.name, "pair": self.name, "contractType": "PERPETUAL", "status": "TRADING",
            "baseAsset": self.name[:-4], "quoteAsset": "USDT", "marginAsset": "USDT",
            "pricePrecision": max(0, -self.tick.normalize().as_tuple().exponent),
            "quantityPrecision": max(0, -self.step.normalize().as_tuple().exponent),
            "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
            "triggerProtect": "0.0500", "liquidationFee": "0.015000", "marketTakeBound": "0.05",
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": dstr(self.min_price), "maxPrice": dstr(self.max_price),
                 "tickSize": dstr(self.tick)},
                {"filterType": "LOT_SIZE", "minQty": dstr(self.min_qty), "maxQty": dstr(self.max_qty),
                 "stepSize": dstr(self.step)},
                {"filterType": "MARKET_LOT_SIZE", "minQty": dstr(self.min_qty), "maxQty": dstr(self.mkt_max),
                 "stepSize": dstr(self.step)},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                {"filterType": "MIN_NOTIONAL", "notional": dstr(self.min_notional)},
                {"filterType": "PERCENT_PRICE", "multiplierUp": "1.1500", "multiplierDown": "0.8500",
                 "multiplierDecimal": 4},
            ],
            "orderTypes": list(TYPES),
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "HIDDEN"],
        }


def default_symbols():
    return {s.name: s for s in [
        Symbol("BTCUSDT", "60000", "0.1", "0.001", "0.001", "1000", "5", "1", "1000000", mkt_max="120"),
        Symbol("ETHUSDT", "3000", "0.01", "0.001", "0.001", "10000", "5", "0.01", "100000"),
        Symbol("XRPUSDT", "0.5", "0.0001", "0.1", "0.1", "10000000", "5", "0.0001", "100"),
        # a micro-priced coin: tiny tick, integer step
        Symbol("PEPEUSDT", "0.0000123", "0.0000001", "1", "1", "100000000000", "1", "0.0000001", "1"),
    ]}


class Position:
    def __init__(self):
        self.amt = Decimal(0)
        self.entry = Decimal(0)


class Account:
    def __init__(self, name, balance):
        self.name = name
        self.wallet = Decimal(balance)
        self.positions = {}
        self.leverage = {}
        self.margin_type = {}
        self.dual = False
        self.events = []

    def pos(self, symbol, side="BOTH"):
        return self.positions.setdefault((symbol, side), Position())


class Exchange:
    def __init__(self, clock):
        self.clock = clock
        self.symbols = default_symbols()
        self.accounts = {}
        self.aliases = {}
        self.orders = {}
        self.ids = itertools.count(1000)
        self.trade_ids = itertools.count(1)
        self.trades = []
        self.income = []
        self.created = {}  # account -> orders accepted (what the venue counts)
        self.listeners = []  # callables(account, event)
        self.frozen = False  # a test holds the market still (see server.py)

    # ---- accounts ----------------------------------------------------------

    def account(self, name, balance="10000"):
        if name not in self.accounts:
            self.accounts[name] = Account(name, balance)
        return self.accounts[name]

    def alias(self, user, name):
        self.aliases[user] = name

    def acct(self, name):
        return self.accounts[self.aliases.get(name, name)]

    def symbol(self, name):
        s = self.symbols.get(name)
        if not s:
            reject(-1121, "Invalid symbol.")
        return s

    def emit(self, acct, event):
        # event times strictly increase per venue, so E orders every pair
        self.last_event_ms = max(self.clock(), getattr(self, "last_event_ms", 0) + 1)
        event.setdefault("E", self.last_event_ms)
        acct.events.append(event)
        for f in self.listeners:
            f(acct.name, event)

    # ---- checks ------------------------------------------------------------

    @staticmethod
    def decimal_param(params, name, required=True):
        v = params.get(name)
        if v is None or v == "":
            if required:
                reject(-1102, "Mandatory parameter '%s' was not sent, was empty/null, or malformed." % name)
            return None
        try:
            d = Decimal(v)
        except Exception:
            reject(-1102, "Mandatory parameter '%s' was not sent, was empty/null, or malformed." % name)
        if not d.is_finite():
            reject(-1102, "Mandatory parameter '%s' was not sent, was empty/null, or malformed." % name)
        return d

    def check_price(self, s, p, what="price"):
        if p <= 0:
            reject(-4001 if what == "price" else -4006, "Price less than 0." if what == "price" else "Stop price less than zero.")
        if p.as_tuple().exponent < s.tick.normalize().as_tuple().exponent:
            reject(-1111, "Precision is over the maximum defined for this asset.")
        if s.min_price and p < s.min_price:
            reject(-4013, "Price less than min price.")
        if s.max_price and p > s.max_price:
            reject(-4002 if what == "price" else -4007, "Price greater than max price.")
        if (p - s.min_price) % s.tick != 0:
            reject(-4014, "Price not increased by tick size.")

    def check_qty(self, s, q, market):
        if q <= 0:
            reject(-4003, "Quantity less than zero.")
        if q.as_tuple().exponent < s.step.normalize().as_tuple().exponent:
            reject(-1111, "Precision is over the maximum defined for this asset.")
        if q < s.min_qty:
            reject(-4004, "Quantity less than min quantity.")
        if q > (s.mkt_max if market else s.max_qty):
            reject(-4005, "Quantity greater than max quantity.")
        if (q - s.min_qty) % s.step != 0:
            reject(-4023, "Qty not increased by step size.")

    # ---- orders --------------------------------------------------------------

    def new_order(self, account, p):
        a = self.acct(account)
        s = self.symbol(p.get("symbol", ""))
        side = p.get("side")
        if side not in ("BUY", "SELL"):
            reject(-1117, "Invalid side.")
        typ = p.get("type")
        if typ not in TYPES:
            reject(-1116, "Invalid orderType.")
        if self.frozen and typ == "MARKET":
            reject(-2010, "New order rejected: trading is paused (test freeze).")
        pside = p.get("positionSide", "BOTH")
        if pside not in ("BOTH", "LONG", "SHORT"):
            reject(-4060, "Invalid position side.")
        if a.dual != (pside != "BOTH"):
            reject(-4061, "Order's position side does not match user's setting.")
        reduce_only = p.get("reduceOnly", "false") == "true"
        close_pos = p.get("closePosition", "false") == "true"
        if a.dual and "reduceOnly" in p:
            reject(-1106, "Parameter 'reduceOnly' sent when not required.")
        cid = p.get("newClientOrderId") or "fake-%d" % next(self.ids)
        if len(cid) > 36:
            reject(-4015, "Client order id length should not be more than 36 chars")
        for o in self.orders.values():
            if o["_account"] == a.name and o["clientOrderId"] == cid and o["status"] in ("NEW", "PARTIALLY_FILLED"):
                reject(-4015, "Client order id is not valid.")
        tif = p.get("timeInForce")
        price = stop = None
        if typ in ("LIMIT", "STOP", "TAKE_PROFIT"):
            if tif is None:
                reject(-1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.")
            if tif not in ("GTC", "IOC", "FOK", "GTX", "HIDDEN"):
                reject(-1115, "Invalid timeInForce.")
            price = self.decimal_param(p, "price")
            self.check_price(s, price)
        elif tif is not None and typ == "MARKET":
            reject(-1114, "TimeInForce parameter sent when not required.")
        if typ in ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET"):
            stop = self.decimal_param(p, "stopPrice")
            self.check_price(s, stop, "stopPrice")
        wt = p.get("workingType", "CONTRACT_PRICE")
        if wt not in ("MARK_PRICE", "CONTRACT_PRICE"):
            reject(-4031, "Invalid parameter working type")
        if close_pos:
            if typ not in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
                reject(-1128, "Combination of optional parameters invalid.")
            if p.get("quantity"):
                reject(-4137, "Quantity must be zero with closePosition equals true")
            if "reduceOnly" in p:
                reject(-1106, "Parameter 'reduceOnly' sent when not required.")
            qty = Decimal(0)
        else:
            qty = self.decimal_param(p, "quantity")
            self.check_qty(s, qty, typ in ("MARKET", "STOP_MARKET", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"))
        ref = price if price is not None else s.price
        if not close_pos and not reduce_only and qty * ref < s.min_notional:
            reject(-4164, "Order's notional must be no smaller than %s (unless you choose reduce only)" % dstr(s.min_notional))
        if price is not None and typ == "LIMIT":
            if side == "BUY" and price > s.price * s.mult_up:
                reject(-4016, "Price is higher than mark price multiplier cap.")
            if side == "SELL" and price < s.price * s.mult_down:
                reject(-4024, "Price is lower than mark price multiplier floor.")
        rate = activation = None
        if typ == "TRAILING_STOP_MARKET":
            rate = self.decimal_param(p, "callbackRate")
            if rate < Decimal("0.1") or rate > Decimal("5"):
                reject(-1130, "Data sent for parameter 'callbackRate' is not valid.")
            activation = self.decimal_param(p, "activationPrice", required=False)
        if typ in ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET") and self._triggered(typ, side, stop, s.price):
            reject(-2021, "Order would immediately trigger.")
        if reduce_only and not a.dual:
            pos = a.pos(s.name)
            if pos.amt == 0 or (pos.amt > 0) == (side == "BUY"):
                reject(-2022, "ReduceOnly Order is rejected.")
        if not reduce_only and not close_pos:
            self.check_margin(a, s, qty * ref)
        oid = next(self.ids)
        t = self.clock()
        o = {"orderId": oid, "symbol": s.name, "status": "NEW", "clientOrderId": cid,
             "price": dstr(price) if price is not None else "0", "avgPrice": "0", "origQty": dstr(qty),
             "executedQty": "0", "cumQuote": "0", "timeInForce": tif or "GTC", "type": typ, "origType": typ,
             "reduceOnly": reduce_only, "closePosition": close_pos, "side": side, "positionSide": pside,
             "stopPrice": dstr(stop) if stop is not None else "0", "workingType": wt, "priceProtect": False,
             "time": t, "updateTime": t, "_account": a.name}
        if rate is not None:
            o["priceRate"] = dstr(rate)
            o["activatePrice"] = dstr(activation) if activation is not None else dstr(s.price)
            o["_extreme"] = None
        self.orders[oid] = o
        self.created[a.name] = self.created.get(a.name, 0) + 1
        self.order_event(a, o, "NEW")
        self.work(o, s)
        return self.public(o)

    def check_margin(self, a, s, notional):
        lev = Decimal(a.leverage.get(s.name, 20))
        used = sum(abs(pos.amt) * self.symbols[sym].price / Decimal(a.leverage.get(sym, 20))
                   for (sym, _), pos in a.positions.items())
        if notional / lev > a.wallet - used:
            reject(-2019, "Margin is insufficient.")

    @staticmethod
    def _triggered(typ, side, stop, price):
        if typ in ("STOP", "STOP_MARKET"):
            return price >= stop if side == "BUY" else price <= stop
        return price <= stop if side == "BUY" else price >= stop

    def work(self, o, s):
        """Fill or trigger o against the current price, as far as it goes."""
        if o["status"] not in ("NEW", "PARTIALLY_FILLED"):
            return
        price = s.price
        typ = o["type"]
        if typ in ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET"):
            if not self._triggered(typ, o["side"], Decimal(o["stopPrice"]), price):
                return
            o["type"] = "LIMIT" if typ in ("STOP", "TAKE_PROFIT") else "MARKET"
        if typ == "TRAILING_STOP_MARKET":
            act = Decimal(o["activatePrice"])
            ext = o["_extreme"]
            if ext is None:
                if (o["side"] == "SELL" and price >= act) or (o["side"] == "BUY" and price <= act):
                    o["_extreme"] = ext = price
                else:
                    return
            ext = max(ext, price) if o["side"] == "SELL" else min(ext, price)
            o["_extreme"] = ext
            r = Decimal(o["priceRate"]) / 100
            if o["side"] == "SELL" and price > ext * (1 - r):
                return
            if o["side"] == "BUY" and price < ext * (1 + r):
                return
            o["type"] = "MARKET"
        if o["type"] == "MARKET":
            self.fill(o, s, price, TAKER)
        elif o["type"] == "LIMIT":
            lim = Decimal(o["price"])
            crosses = price <= lim if o["side"] == "BUY" else price >= lim
            if crosses:
                if o["timeInForce"] == "GTX" and o["updateTime"] == o["time"] and o["executedQty"] == "0" and not o.get("_rested"):
                    self.finish(o, "EXPIRED")
                    return
                self.fill(o, s, price if not o.get("_rested") else lim, MAKER if o.get("_rested") else TAKER)
            elif o["timeInForce"] in ("IOC", "FOK"):
                self.finish(o, "EXPIRED")
            else:
                o["_rested"] = True

    def fill(self, o, s, px, fee_rate):
        a = self.accounts[o["_account"]]
        side = o["side"]
        pos = a.pos(s.name, o["positionSide"])
        qty = Decimal(o["origQty"]) - Decimal(o["executedQty"])
        if o["closePosition"]:
            qty = abs(pos.amt)
            o["origQty"] = dstr(qty)
        if o["reduceOnly"] or o["closePosition"]:
            if pos.amt == 0 or (pos.amt > 0) == (side == "BUY"):
                self.finish(o, "EXPIRED")
                return
            qty = min(qty, abs(pos.amt))
        if qty <= 0:
            self.finish(o, "EXPIRED")
            return
        signed = qty if side == "BUY" else -qty
        if o["positionSide"] == "SHORT":
            closing = side == "BUY"
        elif o["positionSide"] == "LONG":
            closing = side == "SELL"
        else:
            closing = pos.amt != 0 and (pos.amt > 0) != (side == "BUY")
        realized = Decimal(0)
        if closing:
            closed = min(qty, abs(pos.amt))
            direction = 1 if pos.amt > 0 else -1
            realized = closed * (px - pos.entry) * direction
            pos.amt += signed
            if pos.amt != 0 and (pos.amt > 0) != (direction > 0):
                pos.entry = px  # flipped through zero
            elif pos.amt == 0:
                pos.entry = Decimal(0)
        else:
            new = pos.amt + signed
            pos.entry = (abs(pos.amt) * pos.entry + qty * px) / abs(new)
            pos.amt = new
        fee = (qty * px * fee_rate).quantize(Decimal("0.00000001"))
        a.wallet += realized - fee
        executed = Decimal(o["executedQty"]) + qty
        cum = Decimal(o["cumQuote"]) + qty * px
        o["executedQty"] = dstr(executed)
        o["cumQuote"] = dstr(cum)
        o["avgPrice"] = dstr(cum / executed)
        o["status"] = "FILLED" if executed >= Decimal(o["origQty"]) else "PARTIALLY_FILLED"
        o["updateTime"] = self.clock()
        tid = next(self.trade_ids)
        trade = {"symbol": s.name, "id": tid, "orderId": o["orderId"], "side": side, "price": dstr(px),
                 "qty": dstr(qty), "realizedPnl": dstr(realized), "marginAsset": "USDT",
                 "quoteQty": dstr(qty * px), "commission": dstr(fee), "commissionAsset": "USDT",
                 "time": o["updateTime"], "positionSide": o["positionSide"], "buyer": side == "BUY",
                 "maker": fee_rate == MAKER, "_account": a.name}
        self.trades.append(trade)
        self.income.append({"symbol": s.name, "incomeType": "COMMISSION", "income": dstr(-fee), "asset": "USDT",
                            "time": o["updateTime"], "tranId": tid, "tradeId": str(tid), "_account": a.name})
        if realized:
            self.income.append({"symbol": s.name, "incomeType": "REALIZED_PNL", "income": dstr(realized),
                                "asset": "USDT", "time": o["updateTime"], "tranId": tid, "tradeId": str(tid),
                                "_account": a.name})
        self.order_event(a, o, "TRADE", trade)
        self.account_event(a, s.name, o["positionSide"])

    def finish(self, o, status):
        o["status"] = status
        o["updateTime"] = self.clock()
        self.order_event(self.accounts[o["_account"]], o, status)

    def order_event(self, a, o, execution, trade=None):
        ev = {"e": "ORDER_TRADE_UPDATE", "T": o["updateTime"], "o": {
            "s": o["symbol"], "c": o["clientOrderId"], "S": o["side"], "o": o["type"], "f": o["timeInForce"],
            "q": o["origQty"], "p": o["price"], "ap": o["avgPrice"], "sp": o["stopPrice"], "x": execution,
            "X": o["status"], "i": o["orderId"], "l": trade["qty"] if trade else "0",
            "z": o["executedQty"], "L": trade["price"] if trade else "0", "n": trade["commission"] if trade else "0",
            "N": "USDT", "T": o["updateTime"], "t": trade["id"] if trade else 0, "m": bool(trade and trade["maker"]),
            "R": o["reduceOnly"], "wt": o["workingType"], "ot": o["origType"], "ps": o["positionSide"],
            "cp": o["closePosition"], "rp": trade["realizedPnl"] if trade else "0"}}
        self.emit(a, ev)

    def account_event(self, a, symbol, pside):
        pos = a.pos(symbol, pside)
        self.emit(a, {"e": "ACCOUNT_UPDATE", "T": self.clock(), "a": {
            "m": "ORDER",
            "B": [{"a": "USDT", "wb": dstr(a.wallet), "cw": dstr(a.wallet), "bc": "0"}],
            "P": [{"s": symbol, "pa": dstr(pos.amt), "ep": dstr(pos.entry), "cr": "0",
                   "up": dstr(self.unrealized(pos, self.symbols[symbol])), "mt": a.margin_type.get(symbol, "cross"),
                   "iw": "0", "ps": pside}]}})

    @staticmethod
    def unrealized(pos, s):
        return pos.amt * (s.price - pos.entry) if pos.amt else Decimal(0)

    def set_price(self, symbol, price):
        s = self.symbol(symbol)
        s.price = price
        for o in list(self.orders.values()):
            if o["symbol"] == symbol:
                self.work(o, s)

    def find(self, account, p):
        a = self.acct(account)
        oid, cid = p.get("orderId"), p.get("origClientOrderId")
        if not oid and not cid:
            reject(-1102, "Param 'orderId' or 'origClientOrderId' must be sent, but both were empty/null!")
        for o in self.orders.values():
            if o["_account"] != a.name or o["symbol"] != p.get("symbol"):
                continue
            if (oid and str(o["orderId"]) == oid) or (cid and o["clientOrderId"] == cid):
                return o
        reject(-2013, "Order does not exist.")

    def cancel(self, account, p):
        self.symbol(p.get("symbol", ""))
        o = self.find(account, p)
        if o["status"] not in ("NEW", "PARTIALLY_FILLED"):
            reject(-2011, "Unknown order sent.")
        self.finish(o, "CANCELED")
        return self.public(o)

    def modify(self, account, p):
        s = self.symbol(p.get("symbol", ""))
        o = self.find(account, p)
        if o["type"] != "LIMIT" or o["status"] != "NEW":
            reject(-4000, "Invalid order status.")
        if p.get("side") and p["side"] != o["side"]:
            reject(-1117, "Invalid side.")
        q = self.decimal_param(p, "quantity")
        price = self.decimal_param(p, "price")
        self.check_price(s, price)
        self.check_qty(s, q, False)
        o["origQty"], o["price"] = dstr(q), dstr(price)
        o["updateTime"] = self.clock()
        o.pop("_rested", None)
        self.order_event(self.accounts[o["_account"]], o, "AMENDMENT")
        self.work(o, s)
        return self.public(o)

    @staticmethod
    def public(o):
        return {k: v for k, v in o.items() if not k.startswith("_")}

    def duplicates(self, name):
        """Client order ids this account had accepted more than once."""
        seen, dups = {}, []
        for o in self.orders.values():
            if o["_account"] == name:
                cid = o["clientOrderId"]
                seen[cid] = seen.get(cid, 0) + 1
                if seen[cid] == 2:
                    dups.append(cid)
        return dups

    def snapshot(self, full=False):
        out = {"created": self.created, "accounts": {}}
        for name, a in self.accounts.items():
            out["accounts"][name] = {
                "wallet": dstr(a.wallet),
                "positions": {"%s:%s" % k: {"amt": dstr(p.amt), "entry": dstr(p.entry)}
                              for k, p in a.positions.items() if p.amt != 0},
                "open_orders": [self.public(o) for o in self.orders.values()
                                if o["_account"] == name and o["status"] in ("NEW", "PARTIALLY_FILLED")],
                "orders": len([o for o in self.orders.values() if o["_account"] == name]),
                "events": len(a.events),
                "duplicates": self.duplicates(name),
            }
            if full:
                out["accounts"][name]["all_orders"] = [self.public(o) for o in self.orders.values()
                                                       if o["_account"] == name]
                out["accounts"][name]["trades"] = [self.public(t) for t in self.trades if t["_account"] == name]
        return out

    # ---- market data -------------------------------------------------------------

    def kline(self, s, open_time, interval_ms):
        """A deterministic candle for any open time: a smooth path around the symbol's price."""
        k = open_time // interval_ms
        base = s.base
        def at(i):
            return base * Decimal(1 + 0.02 * math.sin(i * 0.05) + 0.004 * math.sin(i * 0.9))
        o, c = at(k), at(k + 1)
        hi = max(o, c) * Decimal("1.001")
        lo = min(o, c) * Decimal("0.999")
        q = lambda x: dstr(x.quantize(s.tick))
        vol = Decimal(100 + (k * 7919) % 1000) * s.step * 1000
        return [open_time, q(o), q(hi), q(lo), q(c), dstr(vol), open_time + interval_ms - 1,
                dstr((vol * c).quantize(Decimal("0.0001"))), 100 + k % 50, dstr(vol / 2), dstr((vol * c / 2).quantize(Decimal("0.0001")))]
