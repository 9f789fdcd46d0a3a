"""A local fake of the Telegram Bot API and of Discord, Slack and generic
JSON webhooks, for vibex's notification tests. It checks what the real
services check (the bot token's form, chat_id and a non-empty text of at
most 4096 characters for Telegram, content of at most 2000 for Discord,
text for Slack, a JSON body everywhere) and records every accepted message.

  POST /bot<token>/sendMessage     Telegram
  POST /discord/<id>               Discord webhook (204)
  POST /slack/<id>                 Slack incoming webhook ("ok")
  POST /hook/<id>                  generic JSON webhook
  POST /down/<id>                  a broken endpoint: hangs (mode "hang") or answers 503
  GET  /_fake/log                  what was received: [{service, path, body, time}]
  POST /_fake/setup                {"down": "hang" | "503"}

Prints "LISTENING <port>" on stdout once it accepts connections.
"""
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG = []
LOCK = threading.Lock()
SETUP = {"down": "hang"}
TOKEN = re.compile(r"^/bot(\d+:[A-Za-z0-9_-]{20,})/sendMessage$")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body, ctype="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def record(self, service, body):
        with LOCK:
            LOG.append({"service": service, "path": self.path, "body": body, "time": time.time()})

    def do_GET(self):
        if self.path == "/_fake/log":
            with LOCK:
                return self.answer(200, LOG)
        self.answer(404, {"error": "not found"})

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if self.path == "/_fake/setup":
            SETUP.update(json.loads(raw or b"{}"))
            return self.answer(200, SETUP)
        if self.path.startswith("/down/"):
            if SETUP.get("down") == "hang":
                time.sleep(120)
                return
            return self.answer(503, {"error": "down"})
        try:
            body = json.loads(raw)
        except ValueError:
            return self.answer(400, {"ok": False, "error_code": 400, "description": "Bad Request: can't parse JSON"})
        if not isinstance(body, dict):
            return self.answer(400, {"ok": False, "error_code": 400, "description": "Bad Request: expected an object"})
        m = TOKEN.match(self.path)
        if m:
            if not body.get("chat_id"):
                return self.answer(400, {"ok": False, "error_code": 400, "description": "Bad Request: chat_id is empty"})
            text = body.get("text") or ""
            if not text.strip():
                return self.answer(400, {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"})
            if len(text) > 4096:
                return self.answer(400, {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"})
            self.record("telegram", body)
            return self.answer(200, {"ok": True, "result": {"message_id": len(LOG), "chat": {"id": body["chat_id"]}, "text": text}})
        if self.path.startswith("/bot"):
            return self.answer(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        if self.path.startswith("/discord/"):
            content = body.get("content") or ""
            if not content or len(content) > 2000:
                return self.answer(400, {"message": "Invalid Form Body", "code": 50035})
            self.record("discord", body)
            return self.answer(204, b"")
        if self.path.startswith("/slack/"):
            if not body.get("text"):
                return self.answer(400, b"no_text", "text/plain")
            self.record("slack", body)
            return self.answer(200, b"ok", "text/plain")
        if self.path.startswith("/hook/"):
            self.record("webhook", body)
            return self.answer(200, {"received": True})
        self.answer(404, {"error": "not found"})


def main():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    print("LISTENING %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
