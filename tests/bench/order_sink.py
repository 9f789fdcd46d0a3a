#!/usr/bin/env python3
"""Order sink for the order-latency bench: a plain HTTP/1.1 keep-alive
server on 127.0.0.1 that notes CLOCK_MONOTONIC the moment each request's
first bytes come off the socket (blocking recv in a thread, so no event-loop
wake-up sits between the socket and the stamp), answers at once with a canned
venue reply, and hands the stamps out on GET /_stamps.

It deliberately checks nothing: the bench measures the client's own cost
from a strategy's call to bytes on the wire, not the fake venue's signature
recovery (tests/support/fake_aster does the checking).
Prints "LISTENING <port>".
"""
import json
import socket
import socketserver
import threading
import time

STAMPS = []
LOCK = threading.Lock()

INFO = json.dumps({"timezone": "UTC", "serverTime": 0, "rateLimits": [], "symbols": [{
    "symbol": "BTCUSDT", "status": "TRADING", "filters": [
        {"filterType": "PRICE_FILTER", "minPrice": "1", "maxPrice": "1000000", "tickSize": "0.1"},
        {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000", "stepSize": "0.001"},
        {"filterType": "MARKET_LOT_SIZE", "minQty": "0.001", "maxQty": "120", "stepSize": "0.001"},
        {"filterType": "MIN_NOTIONAL", "notional": "5"},
        {"filterType": "PERCENT_PRICE", "multiplierUp": "1.15", "multiplierDown": "0.85"}]}]})
ORDER = json.dumps({"orderId": 1, "symbol": "BTCUSDT", "status": "NEW", "clientOrderId": "x", "price": "60000",
                    "origQty": "0.01", "executedQty": "0", "type": "LIMIT", "side": "BUY"})


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        while True:
            data = sock.recv(65536)
            t = time.monotonic_ns()
            if not data:
                return
            if not buf:
                first = t
            buf += data
            while b"\r\n\r\n" in buf:
                head, _, rest = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                n = 0
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    if k.strip().lower() == "content-length":
                        n = int(v)
                if len(rest) < n:
                    break
                buf = rest[n:]
                path = target.split("?")[0]
                if path.endswith("/order"):
                    with LOCK:
                        STAMPS.append(first)
                    body = ORDER
                elif path.endswith("/exchangeInfo"):
                    body = INFO
                elif path.endswith("/time"):
                    body = json.dumps({"serverTime": int(time.time() * 1000)})
                elif path == "/_stamps":
                    with LOCK:
                        body = json.dumps(STAMPS)
                        STAMPS.clear()
                else:
                    body = "{}"
                data = body.encode()
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(data), data))
                first = time.monotonic_ns()


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    srv = Server(("127.0.0.1", 0), Handler)
    print("LISTENING %d" % srv.server_address[1], flush=True)
    srv.serve_forever()
