#!/usr/bin/env python3
"""A fake LLM provider for tests, on 127.0.0.1 in its own process.

It speaks the two wire formats vibex uses and checks what the real services
check:
  POST /v1/chat/completions   OpenAI-compatible (Bearer key, model, messages,
                              response_format)
  POST /v1/messages           Anthropic Messages (x-api-key, anthropic-version,
                              max_tokens, system outside messages, user first,
                              roles alternating)

What it answers is scripted per model (POST /_fake/setup):
  {"key": "sk-test", "models": {"m1": {"mode": "good", "sequence": ["malformed", "good"],
                                        "delay_ms": 0}}}
A call takes the next mode of the model's sequence, then its mode. Modes:
  good          {"decisions": [...]} for the prompt's first symbol (open long)
  short         the same, open short
  hold          every symbol holds
  close         close the first symbol
  prose         good JSON wrapped in prose and a ```json fence
  single        one decision object, not a list, numbers as strings
  malformed     broken JSON
  out_of_range  a huge size and leverage 100
  wrong_stop    a long with its stop loss above the price
  risky         a valid long at leverage 5 (for risk-gate tests)
  oracle / anti trades on a future it is given ({"future": {price: "up" | "down"}}), or against it
  unknown       an unknown symbol and an unknown action
  empty         an empty message
  slow          good, after delay_ms (default 5000)
  429 / 500 / 529   that status with the provider's error body
  echo_key      400 with an error body that repeats the caller's API key
  fuzz:<seed>   a random or adversarial answer (seeded); "fuzz": a new seed per call
Prices and symbols come from the prompt: "### SYMBOL" headings followed by
"current_price = X" (the default prompt's layout).

GET /_fake/log lists every call: path, model, mode, messages, status.
Start: python3 server.py -> prints "LISTENING <port>".
"""
import json
import random
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.key = "sk-test"
        self.models = {}
        self.log = []

    def next_mode(self, model):
        with self.lock:
            m = self.models.setdefault(model, {"mode": "good"})
            seq = m.get("sequence") or []
            mode = seq.pop(0) if seq else m.get("mode", "good")
            if mode == "fuzz":  # a new seeded answer per call
                m["n"] = m.get("n", m.get("seed", 0)) + 1
                mode = "fuzz:%d" % m["n"]
            return mode, m


STATE = State()


def market_of(text):
    """[(symbol, price)] from '### SYMBOL' ... 'current_price = X' blocks."""
    out = []
    for m in re.finditer(r"###\s+([A-Z0-9]{4,})\b(.*?)(?=###|\Z)", text, re.S):
        p = re.search(r"current_price\s*=\s*([0-9.]+)", m.group(2))
        if p:
            out.append((m.group(1), float(p.group(1))))
    return out


def decision(sym, price, side="long"):
    stop = price * (0.98 if side == "long" else 1.02)
    tp = price * (1.04 if side == "long" else 0.96)
    return {"symbol": sym, "action": "open_" + side, "size_usd": 100, "leverage": 2,
            "stop_loss": round(stop, 6), "take_profit": round(tp, 6),
            "invalidation": "close below the 20-period EMA", "confidence": 0.8,
            "rationale": "trend up, momentum positive" if side == "long" else "trend down"}


def fuzz_answer(seed, mk):
    r = random.Random(seed)
    syms = [s for s, _ in mk] or ["BTCUSDT"]
    price = dict(mk)

    def num():
        return r.choice([0, -1, 1e308, float("nan"), 1e-12, r.uniform(-1e6, 1e6), r.uniform(0, 5e4),
                         "1e999", "abc", None, True, [], {}, "12.5", " 7 "])

    def one():
        s = r.choice(syms + ["DOGEUSDT", "", None, 5, "btcusdt"])
        p = price.get(s, 100.0) or 100.0
        d = {"symbol": s, "action": r.choice(["open_long", "open_short", "close", "hold", "adjust", "buy", "sell",
                                               "LONG", "yolo", None, 3]),
             "size_usd": r.choice([num(), r.uniform(1, 1e7), r.uniform(5, 2000)]),
             "leverage": r.choice([num(), r.randint(1, 200), r.uniform(0.5, 10)]),
             "stop_loss": r.choice([num(), p * r.uniform(0.5, 1.5)]),
             "take_profit": r.choice([num(), p * r.uniform(0.5, 1.5)]),
             "confidence": r.choice([num(), r.random(), r.uniform(-1, 2)]),
             "rationale": r.choice(["x", "", None, "a" * 5000])}
        if r.random() < 0.2:
            d["quantity"] = num()
        if r.random() < 0.1:
            del d[r.choice(list(d.keys()))]
        return d

    def plausible():
        # a well-formed decision near the limits: sizes, leverage, confidence
        # and stops that are sometimes just inside and sometimes just outside
        s = r.choice(syms)
        p = price.get(s, 100.0) or 100.0
        act = r.choice(["open_long", "open_short", "open_long", "open_short", "close", "hold", "adjust"])
        side = 1 if act != "open_short" else -1
        d = {"symbol": s, "action": act, "size_usd": round(r.uniform(5, 1500), 2), "leverage": r.choice([1, 2, 3, 3, 4, 10]),
             "stop_loss": round(p * (1 - side * r.uniform(-0.005, 0.05)), 6),
             "take_profit": round(p * (1 + side * r.uniform(-0.005, 0.08)), 6),
             "confidence": round(r.uniform(0.4, 1.0), 2), "rationale": "fuzz"}
        if r.random() < 0.3:
            d = {k: str(v) for k, v in d.items()}
        return d

    kind = r.randrange(12)
    if kind >= 8:
        return json.dumps({"decisions": [plausible() for _ in range(r.randint(1, 4))]})
    if kind == 0:
        return "".join(r.choice('{}[]":,0123456789abc ') for _ in range(r.randint(0, 200)))
    if kind == 1:
        return json.dumps(one())
    if kind == 2:
        return "Here you go:\n```json\n" + json.dumps({"decisions": [one() for _ in range(r.randint(0, 6))]}) + "\n```"
    if kind == 3:
        return json.dumps([one() for _ in range(r.randint(0, 6))])
    if kind == 4:
        return json.dumps({"decisions": one()})
    if kind == 5:
        return json.dumps({s: one() for s in syms})
    if kind == 6:
        return json.dumps({"decisions": [one() for _ in range(r.randint(1, 40))]})
    return json.dumps({"decisions": "none", "nested": {"decisions": [one()]}})


def price_key(p):
    """The price as the default prompt prints it (6 decimals, zeros dropped)."""
    return ("%.6f" % p).rstrip("0").rstrip(".")


def seer(mk, prompt_text, future, anti):
    """Trades on the future it was given ({price_key: "up" | "down"}): an
    oracle, or (anti) its mirror — variants of known quality."""
    out = []
    for sym, price in mk:
        d = future.get(price_key(price))
        if d is None:
            out.append({"symbol": sym, "action": "hold", "confidence": 0.5, "rationale": "no view"})
            continue
        up = (d == "up") != anti
        held = re.search(r'"side":"(long|short)"[^\n]*"symbol":"%s"|"symbol":"%s"[^\n]*"side":"(long|short)"' % (sym, sym),
                         prompt_text)
        side = held and (held.group(1) or held.group(2))
        if side == ("long" if up else "short"):
            out.append({"symbol": sym, "action": "hold", "confidence": 0.6, "rationale": "keep"})
        elif side:
            out.append({"symbol": sym, "action": "close", "confidence": 0.9, "rationale": "turning"})
        else:
            d = decision(sym, price, "long" if up else "short")
            d.update(size_usd=300, confidence=0.9)
            out.append(d)
    return json.dumps({"decisions": out})


def answer_text(mode, prompt_text, m=None):
    mk = market_of(prompt_text)
    sym, price = mk[0] if mk else ("BTCUSDT", 100.0)
    if mode in ("oracle", "anti"):
        return seer(mk, prompt_text, (m or {}).get("future", {}), mode == "anti")
    if mode in ("good", "slow"):
        return json.dumps({"decisions": [decision(sym, price)]})
    if mode == "short":
        return json.dumps({"decisions": [decision(sym, price, "short")]})
    if mode == "hold":
        return json.dumps({"decisions": [{"symbol": s, "action": "hold", "confidence": 0.5, "rationale": "wait"}
                                         for s, _ in mk]})
    if mode == "close":
        return json.dumps({"decisions": [{"symbol": sym, "action": "close", "confidence": 0.9,
                                          "rationale": "target reached"}]})
    if mode == "prose":
        return ("Looking at the data, momentum is positive.\n\n```json\n"
                + json.dumps({"decisions": [decision(sym, price)]}, indent=2) + "\n```\nGood luck!")
    if mode == "single":
        d = decision(sym, price)
        return json.dumps({k: (str(v) if isinstance(v, (int, float)) else v) for k, v in d.items()})
    if mode == "malformed":
        return '{"decisions": [{"symbol": "%s", "action": "open_long", "size_usd": 100,, }' % sym
    if mode == "out_of_range":
        d = decision(sym, price)
        d.update(size_usd=5_000_000, leverage=100)
        return json.dumps({"decisions": [d]})
    if mode == "risky":  # valid as a decision, above any sane leverage limit
        d = decision(sym, price)
        d["leverage"] = 5
        return json.dumps({"decisions": [d]})
    if mode == "wrong_stop":
        d = decision(sym, price)
        d["stop_loss"] = round(price * 1.05, 6)
        return json.dumps({"decisions": [d]})
    if mode == "unknown":
        return json.dumps({"decisions": [{"symbol": "NOPEUSDT", "action": "open_long", "size_usd": 50, "confidence": 0.9},
                                         {"symbol": sym, "action": "moon", "confidence": 0.9}]})
    if mode == "empty":
        return ""
    if mode.startswith("fuzz:"):
        return fuzz_answer(int(mode[5:]), mk)
    return json.dumps({"decisions": []})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # headers and body go out in two writes: without this, Nagle and the
        # client's delayed ACK add 40 ms to every answer
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *a):
        pass

    def send_json(self, status, obj, headers=None):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        if self.path == "/_fake/log":
            with STATE.lock:
                return self.send_json(200, STATE.log)
        self.send_json(404, {"error": {"message": "not found"}})

    def do_POST(self):
        raw = self.read_body()
        if self.path == "/_fake/setup":
            cfg = json.loads(raw or b"{}")
            with STATE.lock:
                if "key" in cfg:
                    STATE.key = cfg["key"]
                for name, m in (cfg.get("models") or {}).items():
                    STATE.models[name] = m
                if cfg.get("clear_log"):
                    STATE.log = []
            return self.send_json(200, {"ok": True})
        if self.path.endswith("/chat/completions"):
            return self.openai(raw)
        if self.path.endswith("/v1/messages"):
            return self.anthropic(raw)
        self.send_json(404, {"error": {"message": "unknown path " + self.path}})

    # ---- shared --------------------------------------------------------------------------

    def record(self, fmt, model, mode, messages, status):
        with STATE.lock:
            STATE.log.append({"format": fmt, "model": model, "mode": mode, "messages": messages, "status": status,
                              "time": time.time()})

    def fault(self, mode, fmt):
        if mode == "echo_key":  # an error body that repeats the caller's credentials, as some providers do
            sent = self.headers.get("Authorization") or self.headers.get("x-api-key") or ""
            self.send_json(400, {"error": {"message": "invalid request for credentials %s (%s)" % (sent, sent.split(" ")[-1]),
                                           "type": "invalid_request_error"}})
            return True
        if mode in ("429", "500", "529"):
            status = int(mode)
            if fmt == "openai":
                body = {"error": {"message": "injected %s" % mode, "type": "rate_limit_exceeded" if status == 429 else "server_error"}}
            else:
                kind = {"429": "rate_limit_error", "500": "api_error", "529": "overloaded_error"}[mode]
                body = {"type": "error", "error": {"type": kind, "message": "injected %s" % mode}}
            self.send_json(status, body, {"retry-after": "0"} if status == 429 else None)
            return True
        return False

    # ---- OpenAI chat completions ------------------------------------------------------------

    def openai(self, raw):
        if self.headers.get("Authorization") != "Bearer " + STATE.key:
            return self.send_json(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                                  "code": "invalid_api_key"}})
        try:
            req = json.loads(raw)
        except ValueError:
            return self.send_json(400, {"error": {"message": "We could not parse the JSON body of your request."}})
        model, messages = req.get("model"), req.get("messages")
        if not isinstance(model, str) or not model:
            return self.send_json(400, {"error": {"message": "you must provide a model parameter"}})
        if not isinstance(messages, list) or not messages:
            return self.send_json(400, {"error": {"message": "'messages' must be a non-empty array"}})
        for m in messages:
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "developer", "tool") \
                    or not isinstance(m.get("content"), str):
                return self.send_json(400, {"error": {"message": "invalid message: %r" % (m,)}})
        rf = req.get("response_format")
        if rf is not None and (not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object", "json_schema")):
            return self.send_json(400, {"error": {"message": "invalid response_format"}})
        if rf and rf.get("type") == "json_object" and not any("json" in m["content"].lower() for m in messages):
            # the real API refuses JSON mode unless the word appears in the messages
            return self.send_json(400, {"error": {"message": "'messages' must contain the word 'json' in some form, "
                                                             "to use 'response_format' of type 'json_object'."}})
        mode, m = STATE.next_mode(model)
        status = int(mode) if mode in ("429", "500", "529") else 200
        self.record("openai", model, mode, messages, status)
        if self.fault(mode, "openai"):
            return
        if mode == "slow":
            time.sleep(m.get("delay_ms", 5000) / 1000)
        prompt = "\n".join(x["content"] for x in messages)
        text = answer_text(mode, prompt, m)
        self.send_json(200, {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(prompt) // 4 + 1, "completion_tokens": len(text) // 4 + 1,
                      "total_tokens": len(prompt) // 4 + len(text) // 4 + 2}})

    # ---- Anthropic messages -------------------------------------------------------------------

    def anthropic(self, raw):
        def err(status, kind, msg):
            self.send_json(status, {"type": "error", "error": {"type": kind, "message": msg}})

        if self.headers.get("x-api-key") != STATE.key:
            return err(401, "authentication_error", "invalid x-api-key")
        if not self.headers.get("anthropic-version"):
            return err(400, "invalid_request_error", "anthropic-version: header is required")
        try:
            req = json.loads(raw)
        except ValueError:
            return err(400, "invalid_request_error", "request body is not valid JSON")
        model, messages = req.get("model"), req.get("messages")
        if not isinstance(model, str) or not model:
            return err(400, "invalid_request_error", "model: Field required")
        if not isinstance(req.get("max_tokens"), int) or req["max_tokens"] < 1:
            return err(400, "invalid_request_error", "max_tokens: Field required")
        if not isinstance(messages, list) or not messages:
            return err(400, "invalid_request_error", "messages: at least one message is required")
        expect = "user"
        for m in messages:
            if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
                return err(400, "invalid_request_error",
                           "messages: Unexpected role %r. Use the top-level system parameter" % (m.get("role") if isinstance(m, dict) else m))
            if m["role"] != expect:
                return err(400, "invalid_request_error", "messages: roles must alternate between user and assistant")
            expect = "assistant" if expect == "user" else "user"
        system = req.get("system") or ""
        if not isinstance(system, (str, list)):
            return err(400, "invalid_request_error", "system: must be a string or a list of blocks")
        mode, m = STATE.next_mode(model)
        status = int(mode) if mode in ("429", "500", "529") else 200
        self.record("anthropic", model, mode, [{"role": "system", "content": system}] + messages, status)
        if self.fault(mode, "anthropic"):
            return
        if mode == "slow":
            time.sleep(m.get("delay_ms", 5000) / 1000)
        prompt = (system if isinstance(system, str) else "") + "\n" + "\n".join(
            x["content"] if isinstance(x["content"], str) else "" for x in messages)
        text = answer_text(mode, prompt, m)
        content = [{"type": "text", "text": text}] if text else []
        self.send_json(200, {"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                             "content": content, "stop_reason": "end_turn", "stop_sequence": None,
                             "usage": {"input_tokens": len(prompt) // 4 + 1, "output_tokens": len(text) // 4 + 1}})


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
