/* test_http.c — the libcurl-on-libuv client against tests/support/httpd,
 * started as a separate process on 127.0.0.1 for each test. */
#include <signal.h>
#include <sys/wait.h>

#include "unit.h"
#include "http.h"

typedef struct server {
    pid_t pid;
    int port;
} server;

/* fork/exec the test server and read its "LISTENING <port>" line. The read
 * blocks, which is fine: no loop is running yet. */
static server start_server(void) {
    server s = {0, 0};
    int fds[2];
    if (pipe(fds) != 0) fail_msg("pipe failed");
    const char *build = getenv("BUILD");
    char path[512];
    snprintf(path, sizeof path, "%s/tests/httpd", build ? build : "build/release");
    s.pid = fork();
    if (s.pid < 0) fail_msg("fork failed");
    if (s.pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execl(path, path, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char line[64] = {0};
    size_t n = 0;
    while (n < sizeof line - 1) {
        ssize_t r = read(fds[0], line + n, 1);
        if (r <= 0 || line[n] == '\n') break;
        n++;
    }
    close(fds[0]);
    if (sscanf(line, "LISTENING %d", &s.port) != 1) fail_msg("httpd did not start (%s): '%s'", path, line);
    return s;
}

static void stop_server(server *s) {
    kill(s->pid, SIGTERM);
    waitpid(s->pid, NULL, 0);
}

typedef struct outcome {
    int calls, ok;
    long status;
    char body[256];
    char kind[32];
    char error[512];
} outcome;

static void on_done(vx_http_req *req, vx_http_result *res, void *ud) {
    (void)req;
    outcome *o = ud;
    o->calls++;
    o->ok = res->ok;
    o->status = res->status;
    snprintf(o->body, sizeof o->body, "%.*s", (int)res->body.len, res->body.p ? res->body.p : "");
    snprintf(o->kind, sizeof o->kind, "%s", res->error_kind ? res->error_kind : "");
    snprintf(o->error, sizeof o->error, "%s", res->error);
}

typedef struct fixture {
    vx_runtime *rt;
    vx_http *h;
    server srv;
    char base[64];
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    f->srv = start_server();
    f->rt = unit_runtime();
    f->h = vx_http_new(f->rt);
    if (!f->h) fail_msg("vx_http_new failed");
    snprintf(f->base, sizeof f->base, "http://127.0.0.1:%d", f->srv.port);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    vx_http_free(f->h);
    vx_runtime_free(f->rt);
    stop_server(&f->srv);
    free(f);
    return 0;
}

static vx_http_req *start(fixture *f, const char *path, long timeout_ms, size_t max_body, outcome *o) {
    char url[256], err[256];
    snprintf(url, sizeof url, "%s%s", f->base, path);
    vx_http_opts opts = {.url = url, .timeout_ms = timeout_ms, .max_body_bytes = max_body};
    vx_http_req *r = vx_http_start(f->h, &opts, on_done, o, err, sizeof err);
    if (!r) fail_msg("vx_http_start(%s): %s", path, err);
    return r;
}

/* Run the loop until every request has finished (nothing else keeps it alive). */
static void run_loop(fixture *f) { uv_run(&f->rt->loop, UV_RUN_DEFAULT); }

static void test_get_body_and_status(void **state) {
    fixture *f = *state;
    outcome a = {0}, b = {0};
    start(f, "/hello", 0, 0, &a);
    start(f, "/status/503", 0, 0, &b);
    run_loop(f);
    assert_int_equal(a.calls, 1);
    assert_true(a.ok);
    assert_int_equal(a.status, 200);
    assert_string_equal(a.body, "hello");
    assert_true(b.ok); /* an HTTP error status is still a response */
    assert_int_equal(b.status, 503);
}

static void test_many_in_flight_reuse_connections(void **state) {
    fixture *f = *state;
    enum { N = 64 };
    static outcome o[N];
    memset(o, 0, sizeof o);
    for (int i = 0; i < N; i++) start(f, "/delay/20", 0, 0, &o[i]);
    assert_int_equal(vx_http_in_flight(f->h), N);
    run_loop(f);
    for (int i = 0; i < N; i++) {
        assert_int_equal(o[i].calls, 1);
        assert_int_equal(o[i].status, 200);
    }
    assert_int_equal(vx_http_in_flight(f->h), 0);
    /* a second wave, sequential, must reuse the pooled connections */
    outcome before = {0}, after = {0};
    start(f, "/conns", 0, 0, &before);
    run_loop(f);
    for (int i = 0; i < 20; i++) {
        outcome x = {0};
        start(f, "/hello", 0, 0, &x);
        run_loop(f);
        assert_int_equal(x.status, 200);
    }
    start(f, "/conns", 0, 0, &after);
    run_loop(f);
    assert_string_equal(before.body, after.body);
}

static void test_connect_refused(void **state) {
    fixture *f = *state;
    outcome o = {0};
    char err[256];
    /* a port nobody listens on: bind one, note it, close it */
    uv_tcp_t tmp;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    assert_int_equal(uv_tcp_init(&f->rt->loop, &tmp), 0);
    assert_int_equal(uv_tcp_bind(&tmp, (const struct sockaddr *)&addr, 0), 0);
    struct sockaddr_in got;
    int len = sizeof got;
    assert_int_equal(uv_tcp_getsockname(&tmp, (struct sockaddr *)&got, &len), 0);
    uv_close((uv_handle_t *)&tmp, NULL);
    run_loop(f);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/x?signature=secret", ntohs(got.sin_port));
    vx_http_opts opts = {.url = url};
    assert_non_null(vx_http_start(f->h, &opts, on_done, &o, err, sizeof err));
    run_loop(f);
    assert_int_equal(o.calls, 1);
    assert_false(o.ok);
    assert_string_equal(o.kind, "connect");
    assert_null(strstr(o.error, "secret")); /* query strings carry signatures */
}

static void test_timeout_and_too_large(void **state) {
    fixture *f = *state;
    outcome slow = {0}, big = {0};
    start(f, "/delay/5000", 100, 0, &slow);
    start(f, "/bytes/100000", 0, 1000, &big);
    run_loop(f);
    assert_false(slow.ok);
    assert_string_equal(slow.kind, "timeout");
    assert_false(big.ok);
    assert_string_equal(big.kind, "too_large");
}

static void test_cancel_and_bad_options(void **state) {
    fixture *f = *state;
    outcome o = {0}, after = {0};
    vx_http_req *r = start(f, "/delay/5000", 0, 0, &o);
    vx_http_cancel(r);
    start(f, "/hello", 0, 0, &after);
    run_loop(f);
    assert_int_equal(o.calls, 0); /* cancelled: never called back */
    assert_int_equal(after.status, 200);
    char err[256];
    vx_http_opts bad = {.url = NULL};
    assert_null(vx_http_start(f->h, &bad, on_done, &o, err, sizeof err));
    assert_true(strlen(err) > 0);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_body_and_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_in_flight_reuse_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_and_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_and_bad_options, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
