/*
 * httpd.c — a small HTTP/1.1 server for tests and benchmarks.
 *
 * Runs as its own process on 127.0.0.1 (port 0 = any free port) and prints
 * "LISTENING <port>" on stdout once it accepts connections. Keep-alive,
 * request bodies by Content-Length or chunked (parsed by http-parser).
 * It dies with its parent (PR_SET_PDEATHSIG), so a crashed test leaves
 * nothing behind.
 *
 * Routes:
 *   /hello            200 "hello"
 *   /echo             200 JSON {method, url, body, headers{lower-case name: value}}
 *   /status/N         status N
 *   /delay/MS         200 after MS milliseconds
 *   /bytes/N          N bytes of 'x'
 *   /json/bad         200 with a malformed JSON body
 *   /close            closes the connection without answering
 *   /retry-after/S    429 with Retry-After: S
 *   /count            200, body = number of requests served so far
 *   /conns            200, body = number of connections accepted so far
 */
#include <http_parser.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <uv.h>

#define MAX_HEADERS 64

typedef struct conn {
    uv_tcp_t tcp;
    http_parser parser;
    char url[2048];
    size_t url_len;
    char body[1 << 16];
    size_t body_len;
    char hname[MAX_HEADERS][64];
    char hval[MAX_HEADERS][256];
    int nheaders;
    int in_value;
    int keep_alive;
    int closing;
    int pending; /* delayed responses not yet written */
} conn;

typedef struct delayed {
    uv_timer_t timer;
    conn *c;
    int keep_alive;
} delayed;

static unsigned long served, accepted;
static http_parser_settings settings;

static void on_closed(uv_handle_t *h) { free(h->data); }

static void on_conn_closed(uv_handle_t *h) {
    conn *c = h->data;
    c->pending = -c->pending - 1; /* negative: closed, with -pending-1 timers still out */
    if (c->pending == -1) free(c);
}

static void close_conn(conn *c) {
    if (c->closing) return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

typedef struct wreq {
    uv_write_t req;
    char *data;
} wreq;

static void on_written(uv_write_t *req, int status) {
    (void)status;
    wreq *w = (wreq *)req;
    free(w->data);
    free(w);
}

static void send_response(conn *c, int status, const char *ctype, const char *extra,
                          const char *body, size_t blen, int keep_alive) {
    if (c->closing) return;
    const char *reason = status == 200 ? "OK" : status == 429 ? "Too Many Requests" : "Status";
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n",
                     status, reason, ctype, blen, extra ? extra : "",
                     keep_alive ? "" : "Connection: close\r\n");
    wreq *w = malloc(sizeof *w);
    w->data = malloc((size_t)n + blen);
    memcpy(w->data, head, (size_t)n);
    memcpy(w->data + n, body, blen);
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)((size_t)n + blen));
    uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_written);
    served++;
    if (!keep_alive) close_conn(c);
}

static void json_escape(char *out, size_t cap, const char *s, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < n && o + 7 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch < 0x20) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", ch);
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o] = '\0';
}

static void send_echo(conn *c, int keep_alive) {
    static char out[1 << 18];
    static char esc[1 << 17];
    size_t o = 0;
    o += (size_t)snprintf(out + o, sizeof out - o, "{\"method\":\"%s\",",
                          http_method_str((enum http_method)c->parser.method));
    json_escape(esc, sizeof esc, c->url, c->url_len);
    o += (size_t)snprintf(out + o, sizeof out - o, "\"url\":\"%s\",", esc);
    json_escape(esc, sizeof esc, c->body, c->body_len);
    o += (size_t)snprintf(out + o, sizeof out - o, "\"body\":\"%s\",\"headers\":{", esc);
    for (int i = 0; i < c->nheaders; i++) {
        for (char *p = c->hname[i]; *p; p++)
            if (*p >= 'A' && *p <= 'Z') *p = (char)(*p + 32);
        json_escape(esc, sizeof esc, c->hval[i], strlen(c->hval[i]));
        o += (size_t)snprintf(out + o, sizeof out - o, "%s\"%s\":\"%s\"", i ? "," : "", c->hname[i], esc);
    }
    o += (size_t)snprintf(out + o, sizeof out - o, "}}");
    send_response(c, 200, "application/json", NULL, out, o, keep_alive);
}

static void delayed_fire(uv_timer_t *t) {
    delayed *d = t->data;
    conn *c = d->c;
    if (c->pending < 0) { /* the connection went away meanwhile */
        if (++c->pending == -1) free(c);
    } else {
        c->pending--;
        send_response(c, 200, "text/plain", NULL, "late", 4, d->keep_alive);
    }
    uv_close((uv_handle_t *)t, on_closed);
}

static void route(conn *c) {
    int ka = http_should_keep_alive(&c->parser);
    c->url[c->url_len] = '\0';
    const char *path = c->url;
    long n;
    if (!strcmp(path, "/hello")) {
        send_response(c, 200, "text/plain", NULL, "hello", 5, ka);
    } else if (!strncmp(path, "/echo", 5)) {
        send_echo(c, ka);
    } else if (sscanf(path, "/status/%ld", &n) == 1) {
        char body[32];
        int len = snprintf(body, sizeof body, "status %ld", n);
        send_response(c, (int)n, "text/plain", NULL, body, (size_t)len, ka);
    } else if (sscanf(path, "/delay/%ld", &n) == 1) {
        delayed *d = calloc(1, sizeof *d);
        d->c = c;
        d->keep_alive = ka;
        d->timer.data = d;
        c->pending++;
        uv_timer_init(c->tcp.loop, &d->timer);
        uv_timer_start(&d->timer, delayed_fire, (uint64_t)n, 0);
    } else if (sscanf(path, "/bytes/%ld", &n) == 1 && n >= 0 && n < (1L << 28)) {
        char *body = malloc((size_t)n + 1);
        memset(body, 'x', (size_t)n);
        send_response(c, 200, "application/octet-stream", NULL, body, (size_t)n, ka);
        free(body);
    } else if (!strcmp(path, "/json/bad")) {
        send_response(c, 200, "application/json", NULL, "{\"price\": 1.5,", 14, ka);
    } else if (!strcmp(path, "/close")) {
        close_conn(c);
    } else if (sscanf(path, "/retry-after/%ld", &n) == 1) {
        char extra[64];
        snprintf(extra, sizeof extra, "Retry-After: %ld\r\n", n);
        send_response(c, 429, "text/plain", extra, "slow down", 9, ka);
    } else if (!strcmp(path, "/conns")) {
        char body[32];
        int len = snprintf(body, sizeof body, "%lu", accepted);
        send_response(c, 200, "text/plain", NULL, body, (size_t)len, ka);
    } else if (!strcmp(path, "/count")) {
        char body[32];
        int len = snprintf(body, sizeof body, "%lu", served + 1);
        send_response(c, 200, "text/plain", NULL, body, (size_t)len, ka);
    } else {
        send_response(c, 404, "text/plain", NULL, "not found", 9, ka);
    }
}

static int on_message_begin(http_parser *p) {
    conn *c = p->data;
    c->url_len = c->body_len = 0;
    c->nheaders = 0;
    c->in_value = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
    conn *c = p->data;
    if (c->url_len + len < sizeof c->url - 1) {
        memcpy(c->url + c->url_len, at, len);
        c->url_len += len;
    }
    return 0;
}

static void append(char *dst, size_t cap, const char *at, size_t len) {
    size_t cur = strlen(dst);
    if (cur + len >= cap) len = cap - cur - 1;
    memcpy(dst + cur, at, len);
    dst[cur + len] = '\0';
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
    conn *c = p->data;
    if (c->in_value || c->nheaders == 0) {
        if (c->nheaders == MAX_HEADERS) return 0;
        c->nheaders++;
        c->hname[c->nheaders - 1][0] = c->hval[c->nheaders - 1][0] = '\0';
        c->in_value = 0;
    }
    append(c->hname[c->nheaders - 1], sizeof c->hname[0], at, len);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
    conn *c = p->data;
    c->in_value = 1;
    if (c->nheaders) append(c->hval[c->nheaders - 1], sizeof c->hval[0], at, len);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
    conn *c = p->data;
    if (c->body_len + len <= sizeof c->body) {
        memcpy(c->body + c->body_len, at, len);
        c->body_len += len;
    }
    return 0;
}

static int on_message_complete(http_parser *p) {
    route(p->data);
    return 0;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)h;
    buf->base = malloc(suggested);
    buf->len = suggested;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
    conn *c = s->data;
    if (n > 0) {
        size_t parsed = http_parser_execute(&c->parser, &settings, buf->base, (size_t)n);
        if (parsed != (size_t)n && !c->closing) close_conn(c);
    } else if (n < 0) {
        close_conn(c);
    }
    free(buf->base);
}

static void on_connection(uv_stream_t *server, int status) {
    if (status < 0) return;
    conn *c = calloc(1, sizeof *c);
    uv_tcp_init(server->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        close_conn(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    accepted++;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
}

static void on_signal(uv_signal_t *h, int sig) {
    (void)sig;
    uv_stop(h->loop);
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 0;
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGPIPE, SIG_IGN);
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_header_field = on_header_field;
    settings.on_header_value = on_header_value;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
    uv_loop_t *loop = uv_default_loop();
    uv_tcp_t server;
    uv_tcp_init(loop, &server);
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", port, &addr);
    if (uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0) != 0 ||
        uv_listen((uv_stream_t *)&server, 1024, on_connection) != 0) {
        fprintf(stderr, "httpd: cannot listen on 127.0.0.1:%d\n", port);
        return 1;
    }
    struct sockaddr_storage bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&server, (struct sockaddr *)&bound, &len);
    printf("LISTENING %d\n", ntohs(((struct sockaddr_in *)&bound)->sin_port));
    fflush(stdout);
    uv_signal_t sigterm;
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}
