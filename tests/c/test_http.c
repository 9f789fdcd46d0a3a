/* test_http.c — the libcurl-on-libuv client against tests/support/httpd. */
#include <signal.h>

#include "unit.h"
#include "http.h"

typedef struct server {
    uv_process_t proc;
    uv_pipe_t out;
    char buf[256];
    size_t len;
    int port;
} server;

static void srv_alloc(uv_handle_t *h, size_t s, uv_buf_t *b) {
    (void)s;
    server *sv = h->data;
    *b = uv_buf_init(sv->buf + sv->len, (unsigned)(sizeof sv->buf - sv->len - 1));
}

static void srv_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
    (void)b;
    server *sv = s->data;
    if (n > 0) sv->len += (size_t)n;
    sv->buf[sv->len] = '\0';
    if (n < 0 || sscanf(sv->buf, "LISTENING %d", &sv->port) == 1) uv_read_stop(s);
}

static void srv_exit(uv_process_t *p, int64_t st, int sig) {
    (void)st;
    (void)sig;
    uv_close((uv_handle_t *)p, NULL);
}

static void start_server(vx_runtime *rt, server *sv) {
    memset(sv, 0, sizeof *sv);
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build/release";
    char path[512];
    snprintf(path, sizeof path, "%s/tests/httpd", build);
    char *args[] = {path, NULL};
    uv_pipe_init(&rt->loop, &sv->out, 0);
    sv->out.data = sv;
    uv_stdio_container_t io[3] = {{.flags = UV_IGNORE},
                                  {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&sv->out},
                                  {.flags = UV_INHERIT_FD, .data.fd = 2}};
    uv_process_options_t o = {.file = path, .args = args, .stdio = io, .stdio_count = 3, .exit_cb = srv_exit};
    assert_int_equal(uv_spawn(&rt->loop, &sv->proc, &o), 0);
    uv_read_start((uv_stream_t *)&sv->out, srv_alloc, srv_read);
    while (!sv->port) uv_run(&rt->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&sv->out, NULL);
}

static void stop_server(vx_runtime *rt, server *sv) {
    uv_process_kill(&sv->proc, SIGTERM);
    uv_run(&rt->loop, UV_RUN_DEFAULT);
}

typedef struct result {
    int done;
    long status;
    int ok;
    char kind[32];
    char body[256];
} result;

static void on_done(vx_http_req *req, vx_http_result *res, void *ud) {
    (void)req;
    result *r = ud;
    r->done++;
    r->ok = res->ok;
    r->status = res->status;
    if (!res->ok) snprintf(r->kind, sizeof r->kind, "%s", res->error_kind);
    snprintf(r->body, sizeof r->body, "%.*s", (int)res->body.len, res->body.p ? res->body.p : "");
}

static vx_http_req *get(vx_http *h, int port, const char *path, long timeout, result *r) {
    char url[256], err[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    vx_http_opts o = {.url = url, .timeout_ms = timeout};
    vx_http_req *req = vx_http_start(h, &o, on_done, r, err, sizeof err);
    assert_non_null(req);
    return req;
}

static void test_many_in_flight_and_reuse(void **state) {
    (void)state;
    vx_runtime *rt = unit_runtime();
    server sv;
    start_server(rt, &sv);
    vx_http *h = vx_http_new(rt);
    static result rs[200];
    memset(rs, 0, sizeof rs);
    for (int i = 0; i < 200; i++) get(h, sv.port, i % 2 ? "/hello" : "/delay/20", 0, &rs[i]);
    assert_int_equal((int)vx_http_in_flight(h), 200);
    uv_run(&rt->loop, UV_RUN_DEFAULT);
    for (int i = 0; i < 200; i++) {
        assert_int_equal(rs[i].done, 1);
        assert_int_equal(rs[i].status, 200);
    }
    /* sequential requests on a warm connection open no new ones */
    result c1 = {0}, c2 = {0};
    get(h, sv.port, "/conns", 0, &c1);
    uv_run(&rt->loop, UV_RUN_DEFAULT);
    for (int i = 0; i < 20; i++) {
        result r = {0};
        get(h, sv.port, "/hello", 0, &r);
        uv_run(&rt->loop, UV_RUN_DEFAULT);
    }
    get(h, sv.port, "/conns", 0, &c2);
    uv_run(&rt->loop, UV_RUN_DEFAULT);
    assert_string_equal(c1.body, c2.body);
    vx_http_free(h);
    stop_server(rt, &sv);
    free(h);
    vx_runtime_free(rt);
}

static void test_errors(void **state) {
    (void)state;
    vx_runtime *rt = unit_runtime();
    server sv;
    start_server(rt, &sv);
    vx_http *h = vx_http_new(rt);
    result refused = {0}, slow = {0}, big = {0}, closed = {0};
    get(h, 1, "/", 0, &refused);
    get(h, sv.port, "/delay/2000", 50, &slow);
    char url[128], err[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/bytes/100000", sv.port);
    vx_http_opts o = {.url = url, .max_body_bytes = 1000};
    assert_non_null(vx_http_start(h, &o, on_done, &big, err, sizeof err));
    get(h, sv.port, "/close", 0, &closed);
    uv_run(&rt->loop, UV_RUN_DEFAULT);
    assert_int_equal(refused.ok, 0);
    assert_string_equal(refused.kind, "connect");
    assert_string_equal(slow.kind, "timeout");
    assert_string_equal(big.kind, "too_large");
    assert_int_equal(closed.ok, 0);
    vx_http_opts bad = {.url = "ftp://x"};
    assert_null(vx_http_start(h, &bad, on_done, &big, err, sizeof err));
    assert_non_null(strstr(err, "http://"));
    const char *hdrs[] = {"Bad\r\nHeader: x", NULL};
    vx_http_opts bad2 = {.url = url, .headers = hdrs};
    assert_null(vx_http_start(h, &bad2, on_done, &big, err, sizeof err));
    vx_http_free(h);
    stop_server(rt, &sv);
    free(h);
    vx_runtime_free(rt);
}

static void test_cancel(void **state) {
    (void)state;
    vx_runtime *rt = unit_runtime();
    server sv;
    start_server(rt, &sv);
    vx_http *h = vx_http_new(rt);
    result r = {0}, other = {0};
    vx_http_req *req = get(h, sv.port, "/delay/200", 0, &r);
    get(h, sv.port, "/hello", 0, &other);
    uv_run(&rt->loop, UV_RUN_NOWAIT);
    vx_http_cancel(req);
    uv_run(&rt->loop, UV_RUN_DEFAULT);
    assert_int_equal(r.done, 0);
    assert_int_equal(other.done, 1);
    assert_int_equal((int)vx_http_in_flight(h), 0);
    vx_http_free(h);
    stop_server(rt, &sv);
    free(h);
    vx_runtime_free(rt);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_in_flight_and_reuse),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_cancel),
    };
    return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
