"""WebSocket side of the fake venue: market streams and the user-data stream.

Speaks RFC 6455 itself (handshake, masking rules, fragmentation, ping/pong,
close) and follows the venue's stream documentation:

  /ws/<stream>                 one raw stream
  /ws                          no stream yet; SUBSCRIBE later (raw payloads)
  /stream?streams=<a>/<b>      combined: {"stream": name, "data": payload}
  /ws/<listenKey>              the user-data stream of the key's account

Run-time control frames: {"method": "SUBSCRIBE"|"UNSUBSCRIBE", "params": […],
"id": n}, {"method": "LIST_SUBSCRIPTIONS", "id": n}. The venue's limits are
enforced: at most 10 incoming messages per second per connection and 200
streams per connection (the connection is closed past either).

Streams: <sym>@kline_<iv>, <sym>@aggTrade, <sym>@markPrice[@1s],
<sym>@bookTicker, <sym>@depth<5|10|20>[@100ms|@500ms]. Candles come from the
same deterministic generator as REST /klines, so a gap seen on the stream can
be backfilled over REST and the two agree.

Faults (POST /_fake/ws {"faults": [...]} or {"clear": true}):
  {"kind": "drop", "target": "market"|"user"|"all", "advance_ms": n}
                                      close sockets, no close frame (and move the clock)
  {"kind": "forget_key", "account": name}   the key silently stops existing
  {"kind": "reorder", "count": n}     user events: hold one, send it after the next
  {"kind": "expire_key", "account": name}   listenKeyExpired, then the key is gone
  {"kind": "malformed", "count": n}   market streams send n broken JSON frames
  {"kind": "close", "code": 1001}     close with a close frame (server going away)
  {"kind": "ping"}                    ping every connection; answers count in "pongs"
  {"kind": "margin_call", "account": name}   a MARGIN_CALL event on the user stream
  {"kind": "mute"}                    open connections go silent and stop answering pings
Bench: /firehose?n=N sends N kline frames as fast as the socket takes them,
then closes with 1000.
"""
import asyncio
import base64
import hashlib
import json
import secrets
import urllib.parse

import market

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
KEY_TTL_MS = 60 * 60 * 1000
MAX_STREAMS = 200
MAX_INCOMING_PER_S = 10


def frame(op, payload):
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | op, n])
    elif n < 65536:
        head = bytes([0x80 | op, 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | op, 127]) + n.to_bytes(8, "big")
    return head + payload


class ProtocolError(Exception):
    def __init__(self, code, why):
        super().__init__(why)
        self.code = code


async def read_frame(reader):
    h = await reader.readexactly(2)
    fin, op = h[0] & 0x80, h[0] & 0x0F
    if h[0] & 0x70:
        raise ProtocolError(1002, "reserved bits set")
    if not h[1] & 0x80:
        raise ProtocolError(1002, "client frames must be masked")
    n = h[1] & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8), "big")
    if n > 1 << 20:
        raise ProtocolError(1009, "frame too large")
    mask = await reader.readexactly(4)
    data = bytearray(await reader.readexactly(n))
    for i in range(n):
        data[i] ^= mask[i & 3]
    return bool(fin), op, bytes(data)


class Conn:
    def __init__(self, ws, writer, kind, combined, account=None):
        self.ws, self.writer, self.kind, self.combined, self.account = ws, writer, kind, combined, account
        self.subs = set()
        self.open = True
        self.incoming = []   # arrival times of the last second's messages
        self.held = None     # a user event held back by the reorder fault
        self.forming = {}    # stream -> open time of the candle being sent
        self.mute = False    # a half-dead line: nothing sent, pings unanswered

    def send_text(self, s):
        if self.open:
            self.writer.write(frame(1, s.encode()))

    def send_json(self, v):
        self.send_text(json.dumps(v, separators=(",", ":")))

    def close(self, code=1000, reason=""):
        if self.open:
            self.open = False
            self.writer.write(frame(8, code.to_bytes(2, "big") + reason.encode()))
            self.writer.close()

    def drop(self):
        if self.open:
            self.open = False
            self.writer.transport.abort()


class Streams:
    def __init__(self, server):
        self.srv = server
        self.conns = set()
        self.keys = {}        # listen key -> {"account": name, "expires": ms}
        self.reorder = 0
        self.malformed = 0
        self.stats = {"connections": 0, "subscribe": 0, "user_events_sent": 0, "pings": 0, "pongs": 0}
        server.ex.listeners.append(self.on_event)

    # ---- listen keys (called from the REST routes) --------------------------

    def create_key(self, account):
        now = self.srv.server_time()
        for k, v in self.keys.items():
            if v["account"] == account and v["expires"] > now:
                v["expires"] = now + KEY_TTL_MS
                return k
        k = secrets.token_hex(32)
        self.keys[k] = {"account": account, "expires": now + KEY_TTL_MS}
        return k

    def keepalive(self, account):
        now = self.srv.server_time()
        for v in self.keys.values():
            if v["account"] == account and v["expires"] > now:
                v["expires"] = now + KEY_TTL_MS
                return True
        return False

    def close_key(self, account):
        for k in [k for k, v in self.keys.items() if v["account"] == account]:
            del self.keys[k]
        for c in list(self.conns):
            if c.kind == "user" and c.account == account:
                c.close(1000, "listen key closed")

    def expire_key(self, account):
        for k in [k for k, v in self.keys.items() if v["account"] == account]:
            del self.keys[k]
        for c in list(self.conns):
            if c.kind == "user" and c.account == account:
                c.send_json({"e": "listenKeyExpired", "E": self.srv.server_time(), "listenKey": k})

    # ---- control --------------------------------------------------------------

    def control(self, req):
        if req.get("clear"):
            self.reorder = self.malformed = 0
        for f in req.get("faults", []):
            kind = f.get("kind")
            if kind == "drop":
                # advance_ms moves the venue clock in the same instant, so the
                # client comes back to candles it never saw on the stream
                self.srv.clock_offset += int(f.get("advance_ms", 0))
                target = f.get("target", "all")
                for c in list(self.conns):
                    if target in ("all", c.kind):
                        c.drop()
            elif kind == "close":
                for c in list(self.conns):
                    if f.get("target", "all") in ("all", c.kind):
                        c.close(f.get("code", 1001), "server going away")
            elif kind == "ping":  # the venue pings every 5 minutes and drops who does not answer
                for c in list(self.conns):
                    if c.open:
                        c.writer.write(frame(9, b"vibex-fake-ping"))
            elif kind == "margin_call":  # the venue's warning before liquidation
                acct = self.srv.ex.acct(f["account"])
                self.srv.ex.emit(acct, {"e": "MARGIN_CALL", "cw": market.dstr(acct.wallet), "p": [
                    {"s": "ETHUSDT", "ps": "LONG", "pa": "1.327", "mt": "CROSSED", "iw": "0", "mp": "187.17127",
                     "up": "-1.166074", "mm": "1.614445"}]})
            elif kind == "mute":
                for c in list(self.conns):
                    c.mute = True
            elif kind == "reorder":
                self.reorder += f.get("count", 1)
            elif kind == "expire_key":
                self.expire_key(f["account"])
            elif kind == "forget_key":
                for k in [k for k, v in self.keys.items() if v["account"] == f["account"]]:
                    del self.keys[k]
            elif kind == "malformed":
                self.malformed += f.get("count", 1)
            else:
                return 400, json.dumps({"error": "unknown ws fault %r" % kind}), {}
        state = dict(self.stats)
        state["open"] = {"market": sum(1 for c in self.conns if c.kind == "market"),
                         "user": sum(1 for c in self.conns if c.kind == "user")}
        state["subscriptions"] = sorted(s for c in self.conns for s in c.subs)
        return 200, json.dumps(state), {}

    # ---- handshake ------------------------------------------------------------

    async def upgrade(self, reader, writer, target, headers):
        key = headers.get("sec-websocket-key", "")
        if headers.get("sec-websocket-version") != "13" or len(base64.b64decode(key + "==")[:16]) != 16 \
                or "upgrade" not in headers.get("connection", "").lower():
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        path, _, query = target.partition("?")
        q = dict(urllib.parse.parse_qsl(query))
        conn, first = self.route(writer, path, q)
        if conn is None:
            body = json.dumps({"code": -1125, "msg": first}).encode()
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))
            writer.close()
            return
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        writer.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: %s\r\n\r\n" % accept).encode())
        self.conns.add(conn)
        self.stats["connections"] += 1
        try:
            if path == "/firehose":
                await self.firehose(conn, int(q.get("n", "100000")))
                return
            for s in first:
                self.subscribe(conn, s)
            await self.serve(conn, reader)
        finally:
            self.conns.discard(conn)
            conn.open = False
            writer.close()

    def route(self, writer, path, q):
        if path == "/firehose":
            return Conn(self, writer, "market", True), []
        if path == "/stream":
            names = [s for s in q.get("streams", "").split("/") if s]
            return Conn(self, writer, "market", True), names
        if path == "/ws":
            return Conn(self, writer, "market", False), []
        if path.startswith("/ws/"):
            name = path[4:]
            info = self.keys.get(name)
            if info:
                if info["expires"] <= self.srv.server_time():
                    return None, "This listenKey does not exist."
                return Conn(self, writer, "user", False, info["account"]), []
            if "@" in name:
                return Conn(self, writer, "market", False), [name]
            return None, "This listenKey does not exist."
        return None, "Unknown path."

    # ---- incoming frames ---------------------------------------------------------

    async def serve(self, conn, reader):
        parts, part_op = [], None
        while conn.open:
            try:
                fin, op, data = await read_frame(reader)
            except ProtocolError as e:
                conn.close(e.code, str(e))
                return
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if not self.count_incoming(conn):
                conn.close(1008, "too many messages")
                return
            if op == 8:
                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1000
                conn.close(code if code not in (1005, 1006) else 1000)
                return
            if op == 9:
                self.stats["pings"] += 1
                if not conn.mute:
                    conn.writer.write(frame(10, data))
                continue
            if op == 10:
                if data == b"vibex-fake-ping":
                    self.stats["pongs"] += 1
                continue
            if op in (1, 2):
                parts, part_op = [data], op
            elif op == 0 and part_op:
                parts.append(data)
            else:
                conn.close(1002, "unexpected continuation")
                return
            if fin:
                msg = b"".join(parts)
                parts, part_op = [], None
                self.on_text(conn, msg)

    def count_incoming(self, conn):
        t = self.srv.server_time()
        conn.incoming = [x for x in conn.incoming if t - x < 1000]
        conn.incoming.append(t)
        return len(conn.incoming) <= MAX_INCOMING_PER_S

    def on_text(self, conn, msg):
        try:
            req = json.loads(msg)
            method, rid = req["method"], req.get("id")
        except (ValueError, KeyError, TypeError):
            conn.send_json({"code": 3, "msg": "Invalid JSON: expected a request object"})
            return
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            params = req.get("params")
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                conn.send_json({"code": 2, "msg": "Invalid request: params must be a list of stream names", "id": rid})
                return
            for p in params:
                if method == "SUBSCRIBE":
                    if not self.subscribe(conn, p):
                        return
                else:
                    conn.subs.discard(p)
            conn.send_json({"result": None, "id": rid})
        elif method == "LIST_SUBSCRIPTIONS":
            conn.send_json({"result": sorted(conn.subs), "id": rid})
        else:
            conn.send_json({"code": 2, "msg": "Invalid request: unknown method", "id": rid})

    def subscribe(self, conn, name):
        if conn.kind != "market":
            return False
        if len(conn.subs) >= MAX_STREAMS and name not in conn.subs:
            conn.close(1008, "more than %d streams" % MAX_STREAMS)
            return False
        conn.subs.add(name)
        self.stats["subscribe"] += 1
        return True

    # ---- user events ---------------------------------------------------------------

    def on_event(self, account, event):
        for c in list(self.conns):
            if c.kind != "user" or c.account != account or not c.open:
                continue
            if self.reorder and c.held is None:
                c.held = event
                self.reorder -= 1
                continue
            c.send_json(event)
            self.stats["user_events_sent"] += 1
            if c.held is not None:
                c.send_json(c.held)
                c.held = None
                self.stats["user_events_sent"] += 1

    # ---- market streams ----------------------------------------------------------

    async def pump(self):
        tick = 0
        while True:
            await asyncio.sleep(0.25)
            tick += 1
            for c in list(self.conns):
                if c.kind == "market" and c.open and not c.mute:
                    for s in sorted(c.subs):
                        self.emit(c, s, tick)
                    if self.malformed and c.subs:
                        self.malformed -= 1
                        c.send_text('{"stream":"x","data":{"e":"kline","E":')

    def emit(self, conn, name, tick):
        sym, _, kind = name.partition("@")
        s = self.srv.ex.symbols.get(sym.upper())
        if not s:
            return
        now = self.srv.server_time()
        payloads = []
        if kind.startswith("kline_"):
            payloads = self.kline_events(conn, name, s, kind[6:], now)
        elif kind == "aggTrade":
            payloads = [{"e": "aggTrade", "E": now, "s": s.name, "a": tick, "p": market.dstr(s.price),
                         "q": market.dstr(s.step * 10), "f": tick * 2, "l": tick * 2 + 1, "T": now, "m": tick % 2 == 0}]
        elif kind in ("markPrice", "markPrice@1s"):
            if kind == "markPrice" and tick % 12 and tick > 1:
                return
            nft = (now // 28800000 + 1) * 28800000
            payloads = [{"e": "markPriceUpdate", "E": now, "s": s.name, "p": market.dstr(s.price),
                         "i": market.dstr(s.price), "P": market.dstr(s.price), "r": market.dstr(s.funding_rate), "T": nft}]
        elif kind == "bookTicker":
            payloads = [{"e": "bookTicker", "u": tick, "E": now, "T": now, "s": s.name,
                         "b": market.dstr(s.price - s.tick), "B": "1.5", "a": market.dstr(s.price + s.tick), "A": "2"}]
        elif kind.startswith("depth"):
            levels = int(kind[5:].split("@")[0] or 20)
            payloads = [{"e": "depthUpdate", "E": now, "T": now, "s": s.name, "U": tick * 10, "u": tick * 10 + 9,
                         "pu": tick * 10 - 1,
                         "b": [[market.dstr(s.price - s.tick * i), "1"] for i in range(1, levels + 1)],
                         "a": [[market.dstr(s.price + s.tick * i), "1"] for i in range(1, levels + 1)]}]
        for p in payloads:
            conn.send_json({"stream": name, "data": p} if conn.combined else p)

    def kline_events(self, conn, name, s, iv_name, now):
        iv = market.INTERVALS.get(iv_name)
        if not iv:
            return []
        open_t = now // iv * iv
        out = []
        prev = conn.forming.get(name)
        if prev is not None and prev < open_t:  # the last candle closed: send its final state
            out.append(self.kline_payload(s, iv_name, iv, prev, now, True))
        conn.forming[name] = open_t
        out.append(self.kline_payload(s, iv_name, iv, open_t, now, False))
        return out

    def kline_payload(self, s, iv_name, iv, open_t, now, closed):
        k = self.srv.ex.kline(s, open_t, iv)
        return {"e": "kline", "E": now, "s": s.name, "k": {
            "t": k[0], "T": k[6], "s": s.name, "i": iv_name, "f": 100, "L": 200, "o": k[1], "c": k[4], "h": k[2],
            "l": k[3], "v": k[5], "n": k[8], "x": closed, "q": k[7], "V": k[9], "Q": k[10], "B": "0"}}

    # ---- bench -------------------------------------------------------------------------

    async def firehose(self, conn, n):
        """n kline frames as fast as the socket takes them (bench only)."""
        s = self.srv.ex.symbols["BTCUSDT"]
        blob = []
        for i in range(1000):
            t = 1699999980000 + i * 60000  # on minute boundaries, as the venue sends them
            k = self.kline_payload(s, "1m", 60000, t, t + 30000, i % 2 == 0)
            blob.append(frame(1, json.dumps({"stream": "btcusdt@kline_1m", "data": k},
                                            separators=(",", ":")).encode()))
        chunk = b"".join(blob)
        sent = 0
        while sent + 1000 <= n:
            conn.writer.write(chunk)
            sent += 1000
            await conn.writer.drain()
        if n > sent:
            conn.writer.write(b"".join(blob[:n - sent]))
        conn.close(1000, "end")
        await conn.writer.drain()
