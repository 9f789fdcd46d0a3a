"""Slow and idle HTTP clients against a server, for vibex's API tests.

  python3 slow_clients.py HOST PORT N SECONDS

Opens N connections; each sends the start of a request and never finishes
its headers (a slowloris client). Prints one JSON line: how many the
server closed within SECONDS, and the slowest close in seconds.
"""
import json
import selectors
import socket
import sys
import time


def main():
    host, port, n, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    sel = selectors.DefaultSelector()
    t0 = time.monotonic()
    opened = 0
    for _ in range(n):
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        opened += 1
    print(json.dumps({"opened": opened}), flush=True)
    closed, slowest = 0, 0.0
    while closed < opened and time.monotonic() - t0 < limit:
        for key, _ in sel.select(timeout=0.2):
            try:
                data = key.fileobj.recv(4096)
            except (ConnectionResetError, OSError):
                data = b""
            if not data:
                closed += 1
                slowest = max(slowest, time.monotonic() - t0)
                sel.unregister(key.fileobj)
                key.fileobj.close()
    print(json.dumps({"opened": opened, "closed": closed, "slowest_s": round(slowest, 2)}), flush=True)


if __name__ == "__main__":
    main()
