#!/usr/bin/env python3
"""A fake Aster futures exchange for tests: REST (V1 HMAC and V3 EIP-712),
symbol filters, orders, fills, positions, balances, rate limits and fault
injection, on 127.0.0.1 in its own process.

It follows the public documentation (asterdex/api-docs, V1 and V3 futures)
and shares no code with the client: signatures are checked with ethsig.py
(plain-Python Keccak and secp256k1 recovery) and the standard hmac module.

Start: python3 server.py  -> prints "LISTENING <port>" on stdout.
Control (no auth, test-only): POST /_fake/setup, /_fake/faults, /_fake/price,
/_fake/clock; GET /_fake/state (?full=1: every order and trade), /_fake/log.
See the handlers below.

Faults (POST /_fake/faults {"faults": [...]}, or {"clear": true}) match a
method and a path prefix and fire `count` times (-1: until cleared), after
letting `skip` matching requests through:
  {"kind": "status", "status": 503}                 answer at once, nothing processed
  {"kind": "status", "status": 503, "after": true}  process, then answer 503
  {"kind": "malformed"}                             process, then a cut-off body
  {"kind": "timeout", "seconds": 30}                process, then answer late
  {"kind": "drop"}                                  close the connection, nothing processed
  {"latency_ms": n}                                 wait first (with any kind); in-flight
                                                    requests show in /_fake/state "inflight"
  "match": "type=STOP_MARKET"                       only requests whose parameters contain this

Setup {"freeze": true} stops the price walk and refuses new MARKET orders
(conditional orders are still taken: they cannot trigger while prices
stand still), so positions and balances hold still for a comparison;
{"freeze": false} lets it go again.

Prices move by themselves with setup {"auto_price": {"period_ms": 250,
"step": 0.0015, "seed": 1}}: a mean-reverting random walk per symbol, and
every move works the resting orders (stops trigger, limits fill).
"""
import asyncio
import hashlib
import math
import random
import hmac
import json
import sys
import time
import urllib.parse
from decimal import Decimal
import ethsig
import market
from exchange import Exchange, VenueError

CHAIN_ID = 1666


def now_ms():
    return int(time.time() * 1000)


class Faults:
    """Injected faults: each rule matches method + path prefix and fires `count` times."""

    def __init__(self):
        self.rules = []

    def add(self, rule):
        rule.setdefault("count", 1)
        rule.setdefault("method", "*")
        rule.setdefault("path", "/")
        self.rules.append(rule)

    def take(self, method, path, text=""):
        for r in self.rules:
            if r["count"] != 0 and (r["method"] in ("*", method)) and path.startswith(r["path"]) \
                    and r.get("match", "") in text:
                if r.get("skip", 0) > 0:
                    r["skip"] -= 1
                    return None
                if r["count"] > 0:
                    r["count"] -= 1
                r["fired"] = r.get("fired", 0) + 1
                return dict(r)
        return None


class RateLimiter:
    """REQUEST_WEIGHT and ORDERS per minute (per IP / per account), 429 then 418."""

    def __init__(self, weight_limit=2400, order_limit=1200, ban_s=120):
        self.weight_limit = weight_limit
        self.order_limit = order_limit
        self.ban_s = ban_s
        self.window = 0
        self.weight = 0
        self.orders = {}
        self.violations = 0
        self.banned_until = 0
        self.window_ms = 60000  # the venue's is a minute; tests shorten it

    def _roll(self, t):
        w = t // self.window_ms
        if w != self.window:
            self.window, self.weight, self.orders = w, 0, {}

    def check(self, t, weight):
        """None, or (status, code, msg, retry_after_s)."""
        self._roll(t)
        if t < self.banned_until:
            return (418, -1003, "Way too many requests; IP banned until %d." % self.banned_until,
                    max(1, (self.banned_until - t + 999) // 1000))
        self.weight += weight
        if self.weight > self.weight_limit:
            self.violations += 1
            if self.violations > 3:
                self.banned_until = t + self.ban_s * 1000
                return (418, -1003, "Way too many requests; IP banned until %d." % self.banned_until, self.ban_s)
            retry = max(1, (self.window_ms - t % self.window_ms + 999) // 1000)
            return (429, -1003, "Too many requests; current limit is %d requests per minute." % self.weight_limit, retry)
        return None

    def count_order(self, t, account):
        self._roll(t)
        n = self.orders.get(account, 0) + 1
        self.orders[account] = n
        return n <= self.order_limit


class Server:
    def __init__(self):
        self.ex = Exchange(now_ms)
        self.faults = Faults()
        self.limits = RateLimiter()
        self.clock_offset = 0
        self.recv_log = []  # (method, path, status) of every venue request
        self.v1_keys = {}   # api key -> (secret, account)
        self.agents = {}    # signer address -> user address (lower case)
        self.nonces = {}    # signer -> list of recent nonces
        self.nonce_window_us = 10_000_000
        self.ws = None
        self.inflight = 0
        self.auto = None    # {"period_ms", "step", "seed"}: prices that move by themselves

    def server_time(self):
        return now_ms() + self.clock_offset

    # ---- authentication ---------------------------------------------------

    def auth_v1(self, headers, query, body, params, signed):
        key = headers.get("x-mbx-apikey")
        if not key:
            raise VenueError(401, -2014, "API-key format invalid.")
        if key not in self.v1_keys:
            raise VenueError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        secret, account = self.v1_keys[key]
        if not signed:
            return account
        if "signature" not in params:
            raise VenueError(400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        total = _strip_signature(query) + _strip_signature(body)
        want = hmac.new(secret.encode(), total.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, params["signature"].lower()):
            raise VenueError(400, -1022, "Signature for this request is not valid.")
        ts = _int_param(params, "timestamp")
        recv = _int_param(params, "recvWindow", 5000)
        if recv > 60000:
            raise VenueError(400, -1130, "Data sent for parameter 'recvWindow' is not valid.")
        st = self.server_time()
        if ts > st + 1000 or st - ts > recv:
            raise VenueError(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        return account

    def auth_v3(self, query, body, params):
        for p in ("nonce", "user", "signer", "signature"):
            if not params.get(p):
                raise VenueError(400, -1102, "Mandatory parameter '%s' was not sent, was empty/null, or malformed." % p)
        raw = query if "signature=" in query else body
        msg = _strip_signature(raw)
        sighex = params["signature"]
        if sighex.startswith("0x"):
            sighex = sighex[2:]
        try:
            sig = bytes.fromhex(sighex)
        except ValueError:
            raise VenueError(400, -1022, "Signature for this request is not valid.")
        who = ethsig.recover(ethsig.eip712_message_digest(msg, CHAIN_ID), sig)
        signer = params["signer"].lower()
        if who is None or who != signer:
            raise VenueError(400, -1022, "Signature for this request is not valid.")
        user = params["user"].lower()
        if self.agents.get(signer) != user:
            raise VenueError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        nonce = _int_param(params, "nonce")
        st_us = self.server_time() * 1000
        if abs(nonce - st_us) > self.nonce_window_us:
            raise VenueError(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        seen = self.nonces.setdefault(signer, [])
        if nonce in seen:
            raise VenueError(400, -4225, "Nonce Expired")
        if len(seen) >= 100 and nonce < min(seen):
            raise VenueError(400, -4225, "Nonce Expired")
        seen.append(nonce)
        if len(seen) > 100:
            seen.remove(min(seen))
        return user

    # ---- dispatch ---------------------------------------------------------

    async def handle(self, method, target, headers, body):
        path, _, query = target.partition("?")
        if path.startswith("/_fake/"):
            return self.control(method, path, query, body)
        self.inflight += 1
        try:
            return await self.handle_venue(method, path, query, headers, body)
        finally:
            self.inflight -= 1

    async def move_prices(self):
        """The auto_price walk: each period every symbol moves by a small
        random step, pulled back toward where it started, on its tick."""
        rng = None
        while True:
            auto = self.auto
            if not auto or self.ex.frozen:
                await asyncio.sleep(0.1)
                continue
            if rng is None:
                rng = random.Random(auto.get("seed", 1))
            await asyncio.sleep(auto.get("period_ms", 250) / 1000)
            step = auto.get("step", 0.0015)
            for s in self.ex.symbols.values():
                p = float(s.price)
                pull = 0.05 * math.log(float(s.base) / p)
                p *= math.exp(step * rng.gauss(0, 1) + pull)
                d = (Decimal(repr(p)) / s.tick).quantize(Decimal(1)) * s.tick
                if d > 0:
                    self.ex.set_price(s.name, d)

    async def handle_venue(self, method, path, query, headers, body):
        fault = self.faults.take(method, path, query + "&" + body)
        if fault and fault.get("latency_ms"):
            await asyncio.sleep(fault["latency_ms"] / 1000)
        if fault and fault.get("kind") == "drop":
            return "drop"
        if fault and fault.get("kind") == "status" and not fault.get("after"):
            return self.fault_status(fault)
        status, payload, extra = self.venue(method, path, query, headers, body)
        self.recv_log.append((method, path, status))
        if fault and fault.get("kind") == "status" and fault.get("after"):
            return self.fault_status(fault)
        if fault and fault.get("kind") == "malformed":
            return 200, '{"orderId": 12, "status": "NE', {}
        if fault and fault.get("kind") == "timeout":
            await asyncio.sleep(fault.get("seconds", 30))
        return status, json.dumps(payload), extra

    def fault_status(self, f):
        st = f["status"]
        extra = {}
        if f.get("retry_after") is not None:
            extra["Retry-After"] = str(f["retry_after"])
        if st == 503:
            body = {"code": -1007, "msg": "Timeout waiting for response from backend server. Send status unknown; execution status unknown."}
        elif st in (429, 418):
            body = {"code": -1003, "msg": "Too many requests."}
        else:
            body = {"code": -1000, "msg": "An unknown error occured while processing the request."}
        return st, json.dumps(body), extra

    def venue(self, method, path, query, headers, body):
        t = self.server_time()
        try:
            route = ROUTES.get((method, _route_path(path)))
            if route is None:
                raise VenueError(404, -1000, "Not found: %s %s" % (method, path))
            handler, security, weight = route
            limited = self.limits.check(t, weight)
            if limited:
                st, code, msg, retry = limited
                return st, {"code": code, "msg": msg}, {"Retry-After": str(retry)}
            params = _parse_params(query, body)
            account = None
            if security != "NONE":
                if path.startswith("/fapi/v3/"):
                    account = self.auth_v3(query, body, params)
                else:
                    account = self.auth_v1(headers, query, body, params, security != "USER_STREAM")
            extra = {"X-MBX-USED-WEIGHT-1M": str(self.limits.weight)}
            if handler.__name__ in ("new_order", "batch_orders"):
                if not self.limits.count_order(t, account):
                    return 429, {"code": -1015, "msg": "Too many new orders; current limit is %d orders per MINUTE." % self.limits.order_limit}, {"Retry-After": "10"}
                extra["X-MBX-ORDER-COUNT-1M"] = str(self.limits.orders.get(account, 0))
            result = handler(self, account, params)
            return 200, result, extra
        except VenueError as e:
            return e.status, {"code": e.code, "msg": e.msg}, {"X-MBX-USED-WEIGHT-1M": str(self.limits.weight)}

    # ---- control -----------------------------------------------------------

    def control(self, method, path, query, body):
        req = json.loads(body) if body else {}
        if path == "/_fake/setup":
            for a in req.get("accounts", []):
                acct = self.ex.account(a["name"], a.get("balance", "10000"))
                if a.get("api_key"):
                    self.v1_keys[a["api_key"]] = (a["api_secret"], acct.name)
                if a.get("user"):
                    self.agents[a["signer"].lower()] = a["user"].lower()
                    self.ex.alias(a["user"].lower(), acct.name)
            if "weight_limit" in req:
                self.limits.weight_limit = req["weight_limit"]
            if "order_limit" in req:
                self.limits.order_limit = req["order_limit"]
            if "nonce_window_ms" in req:
                self.nonce_window_us = int(req["nonce_window_ms"]) * 1000
            if "window_ms" in req:
                self.limits.window_ms = req["window_ms"]
            if "ban_s" in req:
                self.limits.ban_s = req["ban_s"]
            if "auto_price" in req:
                self.auto = req["auto_price"]
            if "freeze" in req:
                self.ex.frozen = bool(req["freeze"])
            return 200, "{}", {}
        if path == "/_fake/faults":
            for f in req.get("faults", []):
                self.faults.add(f)
            if req.get("clear"):
                self.faults.rules = []
            return 200, "{}", {}
        if path == "/_fake/price":
            self.ex.set_price(req["symbol"], Decimal(str(req["price"])))
            return 200, "{}", {}
        if path == "/_fake/clock":
            self.clock_offset = int(req.get("offset_ms", 0))
            return 200, "{}", {}
        if path == "/_fake/state":
            st = self.ex.snapshot(full="full=1" in query)
            st["inflight"] = self.inflight
            st["faults_fired"] = sum(r.get("fired", 0) for r in self.faults.rules)
            return 200, json.dumps(st, default=str), {}
        if path == "/_fake/ws" and self.ws:
            return self.ws.control(req)
        if path == "/_fake/log":
            return 200, json.dumps(self.recv_log), {}
        return 404, '{"error":"unknown control path"}', {}


# ---- helpers --------------------------------------------------------------

def _strip_signature(raw):
    """The parameter string as signed: everything but the signature pair."""
    if not raw:
        return ""
    parts = [p for p in raw.split("&") if not p.startswith("signature=")]
    return "&".join(parts)


def _parse_params(query, body):
    params = {}
    for raw in (body, query):  # the query string wins when both carry a name
        for k, v in urllib.parse.parse_qsl(raw, keep_blank_values=True):
            params[k] = v
    return params


def _int_param(params, name, default=None):
    v = params.get(name)
    if v is None or v == "":
        if default is not None:
            return default
        raise VenueError(400, -1102, "Mandatory parameter '%s' was not sent, was empty/null, or malformed." % name)
    try:
        return int(v)
    except ValueError:
        raise VenueError(400, -1102, "Mandatory parameter '%s' was not sent, was empty/null, or malformed." % name)


def _route_path(path):
    # /fapi/v1/x, /fapi/v2/x and /fapi/v3/x share handlers
    parts = path.split("/")
    if len(parts) > 3 and parts[1] == "fapi" and parts[2] in ("v1", "v2", "v3", "v4"):
        return "/" + "/".join(parts[3:])
    return path


ROUTES = market.routes()


# ---- HTTP/1.1 ---------------------------------------------------------------

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           418: "I'm a teapot", 429: "Too Many Requests", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable"}


async def serve_conn(server, reader, writer):
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            method, target, _ = line.decode("latin-1").split(" ", 2)
            headers = {}
            while True:
                h = await reader.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            n = int(headers.get("content-length", "0"))
            body = (await reader.readexactly(n)).decode() if n else ""
            if headers.get("upgrade", "").lower() == "websocket" and server.ws:
                await server.ws.upgrade(reader, writer, target, headers)
                return
            res = await server.handle(method, target, headers, body)
            if res == "drop":
                break
            status, payload, extra = res
            data = payload.encode()
            head = ["HTTP/1.1 %d %s" % (status, REASONS.get(status, "Status")),
                    "Content-Type: application/json", "Content-Length: %d" % len(data)]
            head += ["%s: %s" % kv for kv in extra.items()]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
        pass
    finally:
        writer.close()


async def main():
    server = Server()
    try:
        import ws
        server.ws = ws.Streams(server)
    except ImportError:
        pass
    srv = await asyncio.start_server(lambda r, w: serve_conn(server, r, w), "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    print("LISTENING %d" % port, flush=True)
    if server.ws:
        asyncio.get_running_loop().create_task(server.ws.pump())
    asyncio.get_running_loop().create_task(server.move_prices())
    async with srv:
        await srv.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
