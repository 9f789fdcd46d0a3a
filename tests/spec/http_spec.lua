local h = require "helpers"

describe("http.request", function()
  local srv
  setup(function() srv = h.httpd() end)
  teardown(function() srv.stop() end)

  it("returns status, headers and body", function()
    local res = assert(http.request { url = srv.base .. "/hello" })
    assert.equal(200, res.status)
    assert.equal("hello", res.body)
    assert.equal("text/plain", res.headers["content-type"])
  end)

  it("sends method, headers and body", function()
    local res = assert(http.request { method = "POST", url = srv.base .. "/echo?x=1",
      headers = { ["X-Test"] = "yes" }, body = "payload" })
    local echo = assert(json.decode(res.body))
    assert.equal("POST", echo.method)
    assert.equal("/echo?x=1", echo.url)
    assert.equal("payload", echo.body)
    assert.equal("yes", echo.headers["x-test"])
  end)

  it("runs many requests at once without blocking timers", function()
    local ticks = 0
    local ticker = task.every(5, function() ticks = ticks + 1 end)
    local ts = {}
    for i = 1, 64 do ts[i] = task.spawn(function() return http.request { url = srv.base .. "/delay/100" } end) end
    local t0 = task.now()
    for i = 1, 64 do
      local ok, res = ts[i]:join()
      assert.is_true(ok)
      assert.equal(200, res.status)
    end
    ticker:cancel()
    assert.is_true(task.now() - t0 < 2000)
    assert.is_true(ticks >= 5)
  end)

  it("returns nil, err (one error type) on transport errors", function()
    local errors = require "vibex.errors"
    local res, err = http.request { url = "http://127.0.0.1:1/x?signature=abc" }
    assert.is_nil(res)
    assert.is_true(errors.is(err, "transport"))
    assert.equal("connect", err.transport)
    assert.is_true(err.retryable)
    assert.matches("GET http://127.0.0.1:1/x", err.message, 1, true)
    assert.is_nil(tostring(err):find("signature=abc", 1, true))
    res, err = http.request { url = srv.base .. "/delay/2000", timeout_ms = 50 }
    assert.is_nil(res)
    assert.equal("timeout", err.kind)
    res, err = task.timeout(30, http.request, { url = srv.base .. "/delay/2000" })
    assert.is_nil(res)
    assert.equal("timeout after 30 ms", err.message)
    res, err = http.request { url = "ftp://x" }
    assert.equal("invalid", err.kind)
  end)

  it("gives a clear error for a malformed JSON body", function()
    local v, err = http.json { url = srv.base .. "/json/bad" }
    assert.is_nil(v)
    assert.matches("json: .* at character %d+", err)
  end)
end)

describe("http.request over TLS", function()
  local process = require "vibex.process"

  --- nghttpd (HTTP/2 only, TLS) on a free port with a fresh self-signed cert.
  local function start_h2(dir)
    local _, code = process.run(assert(process.which("openssl"), "openssl missing: run make deps"), {
      "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", dir .. "/key.pem", "-out", dir .. "/cert.pem",
      "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost" },
      { stderr = "ignore" })
    assert.equal(0, code)
    h.write(dir .. "/index.html", "hello over h2\n")
    local nghttpd = assert(process.which("nghttpd") or process.which("/usr/sbin/nghttpd"), "nghttpd missing: run make deps")
    for _ = 1, 20 do
      local port = math.random(20000, 60000)
      local p = assert(process.spawn { file = nghttpd, stderr = "pipe",
        args = { "-v", "-d", dir, tostring(port), dir .. "/key.pem", dir .. "/cert.pem" } })
      local line = task.timeout(5000, function() return p:read_line() end)
      if line and line:match("listen") then return p, port end
      p:kill("KILL")
    end
    error("could not start nghttpd on any port")
  end

  it("negotiates HTTP/2 and multiplexes requests", function()
    local dir = h.tmpdir()
    local srv, port = start_h2(dir)
    local url = ("https://127.0.0.1:%d/index.html"):format(port)
    local tasks = {}
    for i = 1, 10 do
      tasks[i] = task.spawn(function() return http.request { url = url, cainfo = dir .. "/cert.pem", timeout_ms = 10000 } end)
    end
    for i = 1, 10 do
      local ok, res, err = tasks[i]:join()
      assert.is_true(ok)
      assert.truthy(res, err)
      assert.equal(200, res.status)
      assert.equal(2, res.http_version)
      assert.equal("hello over h2\n", res.body)
    end
    -- an untrusted certificate is a TLS error, not a response
    local res, err = http.request { url = url, timeout_ms = 10000 }
    assert.is_nil(res)
    assert.equal("tls", err.transport, tostring(err))
    assert.equal("transport", err.kind)
    srv:kill("TERM")
    srv:wait()
  end)
end)
