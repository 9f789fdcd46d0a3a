/*
 * http.c — libcurl multi on libuv.
 *
 * The shape is the one libcurl documents for event loops: curl tells us
 * which sockets to watch (socket callback → one uv_poll per socket, attached
 * to curl's socket with curl_multi_assign) and when to wake it (timer
 * callback → one uv_timer); we hand readiness back through
 * curl_multi_socket_action and collect finished transfers with
 * curl_multi_info_read. Completion callbacks run from there, never from
 * inside a libcurl callback, so they may start or cancel other requests.
 *
 * Error messages name the method and the URL without its query string
 * (signed requests carry signatures there) and pass through the log's
 * redaction.
 */
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "log.h"

#define DEFAULT_TIMEOUT_MS 30000L
#define DEFAULT_CONNECT_TIMEOUT_MS 10000L
#define DEFAULT_MAX_BODY (64u * 1024 * 1024)

typedef struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    vx_http *h;
    struct sock_ctx *prev, *next;
} sock_ctx;

struct vx_http {
    vx_runtime *rt;
    CURLM *multi;
    uv_timer_t timer;
    int in_timer_cb;
    size_t in_flight;
    vx_http_req *reqs;
    sock_ctx *socks;
};

struct vx_http_req {
    vx_http *h;
    CURL *easy;
    struct curl_slist *hdrs;
    vx_http_result res;
    vx_http_done_fn done;
    void *ud;
    size_t max_body;
    int too_large;
    long timeout_ms;
    char method[16];
    char *url_shown; /* scheme://host/path, for messages */
    char errbuf[CURL_ERROR_SIZE];
    uint64_t t0;
    vx_http_req *prev, *next;
};

/* ---- sockets and timer -------------------------------------------------- */

static void check_done(vx_http *h);

/* curl keeps finished connections open for reuse, and watches their
 * sockets (and sometimes a timer) meanwhile. Those handles must not keep
 * the runtime alive: they are referenced only while a request is in
 * flight, so an idle client lets the loop end. */
static void set_ref(uv_handle_t *handle, int ref) {
    if (ref) uv_ref(handle);
    else uv_unref(handle);
}

static void update_refs(vx_http *h) {
    int busy = h->in_flight > 0;
    for (sock_ctx *c = h->socks; c; c = c->next) set_ref((uv_handle_t *)&c->poll, busy);
    set_ref((uv_handle_t *)&h->timer, busy);
}

static void free_sock_cb(uv_handle_t *handle) { free(handle->data); }

static void unlink_sock(vx_http *h, sock_ctx *c) {
    if (c->prev) c->prev->next = c->next;
    else h->socks = c->next;
    if (c->next) c->next->prev = c->prev;
}

static void close_sock(vx_http *h, sock_ctx *c) {
    unlink_sock(h, c);
    uv_poll_stop(&c->poll);
    uv_close((uv_handle_t *)&c->poll, free_sock_cb);
}

static void poll_cb(uv_poll_t *p, int status, int events) {
    sock_ctx *c = p->data;
    vx_http *h = c->h;
    int flags = 0;
    if (status < 0) flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(h->multi, c->fd, flags, &running);
    check_done(h);
}

static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp) {
    (void)easy;
    vx_http *h = userp;
    sock_ctx *c = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (c) {
            close_sock(h, c);
            curl_multi_assign(h->multi, s, NULL);
        }
        return 0;
    }
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c) return -1;
        if (uv_poll_init_socket(&h->rt->loop, &c->poll, s) != 0) {
            free(c);
            return -1;
        }
        c->fd = s;
        c->h = h;
        c->poll.data = c;
        c->next = h->socks;
        if (h->socks) h->socks->prev = c;
        h->socks = c;
        curl_multi_assign(h->multi, s, c);
        set_ref((uv_handle_t *)&c->poll, h->in_flight > 0);
    }
    int ev = 0;
    if (what & CURL_POLL_IN) ev |= UV_READABLE;
    if (what & CURL_POLL_OUT) ev |= UV_WRITABLE;
    uv_poll_start(&c->poll, ev, poll_cb);
    return 0;
}

static void timer_cb(uv_timer_t *t) {
    vx_http *h = t->data;
    int running;
    h->in_timer_cb = 1;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    h->in_timer_cb = 0;
    check_done(h);
}

static int timer_func(CURLM *multi, long ms, void *userp) {
    (void)multi;
    vx_http *h = userp;
    if (ms < 0) {
        uv_timer_stop(&h->timer);
        return 0;
    }
    /* 0 means "as soon as possible": the next loop turn. From inside our own
     * timer callback, a 0 timer would fire again in the same timer phase, so
     * give libuv 1 ms there. */
    if (ms == 0 && h->in_timer_cb) ms = 1;
    uv_timer_start(&h->timer, timer_cb, (uint64_t)ms, 0);
    return 0;
}

vx_http *vx_http_new(vx_runtime *rt) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return NULL;
    vx_http *h = calloc(1, sizeof *h);
    if (!h) goto fail;
    h->rt = rt;
    h->multi = curl_multi_init();
    if (!h->multi) goto fail;
    uv_timer_init(&rt->loop, &h->timer);
    h->timer.data = h;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_func);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    return h;
fail:
    free(h);
    curl_global_cleanup();
    return NULL;
}

static void free_req(vx_http_req *r) {
    vx_http *h = r->h;
    if (r->prev) r->prev->next = r->next;
    else h->reqs = r->next;
    if (r->next) r->next->prev = r->prev;
    curl_multi_remove_handle(h->multi, r->easy);
    curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->hdrs);
    vx_buf_free(&r->res.headers);
    vx_buf_free(&r->res.body);
    free(r->url_shown);
    free(r);
    h->in_flight--;
    if (h->in_flight == 0) update_refs(h);
}

/* The timer is the last handle to close; its callback owns the struct. */
static void on_timer_closed(uv_handle_t *t) { free(t->data); }

void vx_http_free(vx_http *h) {
    if (!h) return;
    while (h->reqs) free_req(h->reqs);
    curl_multi_cleanup(h->multi);
    while (h->socks) close_sock(h, h->socks); /* any curl did not remove */
    curl_global_cleanup();
    /* h is freed when the loop has run the close (next uv_run) */
    uv_close((uv_handle_t *)&h->timer, on_timer_closed);
}

size_t vx_http_in_flight(const vx_http *h) { return h->in_flight; }

/* ---- a request ---------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
    vx_http_req *r = ud;
    size_t len = size * n;
    if (r->res.body.len + len > r->max_body) {
        r->too_large = 1;
        return 0; /* makes curl fail the transfer with CURLE_WRITE_ERROR */
    }
    vx_buf_add(&r->res.body, p, len);
    return r->res.body.oom ? 0 : len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
    vx_http_req *r = ud;
    size_t len = size * n;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) vx_buf_reset(&r->res.headers); /* final response wins */
    vx_buf_add(&r->res.headers, p, len);
    return len;
}

static char *shown_url(const char *url) {
    size_t n = strcspn(url, "?#");
    char *s = malloc(n + 1);
    if (!s) return NULL;
    memcpy(s, url, n);
    s[n] = '\0';
    return s;
}

static int set_method(vx_http_req *r, const vx_http_opts *o, char *err, size_t errlen) {
    const char *m = o->method ? o->method : "GET";
    size_t n = strlen(m);
    if (n == 0 || n >= sizeof r->method || strspn(m, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != n) {
        snprintf(err, errlen, "invalid HTTP method '%s' (use an upper-case token like GET)", m);
        return -1;
    }
    memcpy(r->method, m, n + 1);
    if (strcmp(m, "HEAD") == 0) curl_easy_setopt(r->easy, CURLOPT_NOBODY, 1L);
    else if (strcmp(m, "GET") != 0) curl_easy_setopt(r->easy, CURLOPT_CUSTOMREQUEST, m);
    if (o->body) {
        curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
        curl_easy_setopt(r->easy, CURLOPT_COPYPOSTFIELDS, o->body);
    }
    return 0;
}

static int set_headers(vx_http_req *r, const vx_http_opts *o, char *err, size_t errlen) {
    /* Expect: 100-continue would stall every body over 1 KiB for a round trip */
    r->hdrs = curl_slist_append(NULL, "Expect:");
    for (const char *const *hp = o->headers; hp && *hp; hp++) {
        if (strpbrk(*hp, "\r\n") || !strchr(*hp, ':')) {
            snprintf(err, errlen, "invalid header '%.60s' (want 'Name: value', no line breaks)", *hp);
            return -1;
        }
        struct curl_slist *n = curl_slist_append(r->hdrs, *hp);
        if (!n) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        r->hdrs = n;
    }
    curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->hdrs);
    return 0;
}

static void set_transport(vx_http_req *r, const vx_http_opts *o) {
    CURL *e = r->easy;
    r->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, r->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     o->connect_timeout_ms > 0 ? o->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_USERAGENT, "vibex/" VX_VERSION);
    long version = o->http_version == 1   ? CURL_HTTP_VERSION_1_1
                   : o->http_version == 2 ? CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE
                                          : CURL_HTTP_VERSION_2TLS;
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, version);
    /* over TLS, wait for a connection that may multiplex (h2) rather than
     * opening another; plain HTTP/1.1 never multiplexes, so do not wait */
    if (strncmp(o->url, "https://", 8) == 0 || o->http_version == 2)
        curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    if (o->cainfo) curl_easy_setopt(e, CURLOPT_CAINFO, o->cainfo);
    if (o->insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
}

/* Drive curl once now rather than later in the loop: on a kept-alive
 * connection the request leaves inside this call, before any other task
 * (a database write queued by the same decision) gets the loop. That is
 * most of an order's latency. Completions are never reported from here (the
 * caller has not begun to wait): the timer, due on the next turn, collects
 * them and sets curl's own timeout again. */
static void kick(vx_http *h) {
    if (h->in_timer_cb) return; /* the timer callback drives curl right after this anyway */
    int running;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    uv_timer_start(&h->timer, timer_cb, 0, 0);
}

vx_http_req *vx_http_start(vx_http *h, const vx_http_opts *o, vx_http_done_fn done, void *ud,
                           char *err, size_t errlen) {
    if (!o->url || !*o->url) {
        snprintf(err, errlen, "missing url");
        return NULL;
    }
    if (strncmp(o->url, "http://", 7) != 0 && strncmp(o->url, "https://", 8) != 0) {
        snprintf(err, errlen, "url must start with http:// or https://");
        return NULL;
    }
    vx_http_req *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->h = h;
    r->done = done;
    r->ud = ud;
    r->max_body = o->max_body_bytes ? o->max_body_bytes : DEFAULT_MAX_BODY;
    r->url_shown = shown_url(o->url);
    r->easy = curl_easy_init();
    if (!r->easy || !r->url_shown) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    curl_easy_setopt(r->easy, CURLOPT_URL, o->url);
    curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
    curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(r->easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(r->easy, CURLOPT_HEADERDATA, r);
    if (set_method(r, o, err, errlen) != 0 || set_headers(r, o, err, errlen) != 0) goto fail;
    set_transport(r, o);
    r->t0 = uv_hrtime();
    r->next = h->reqs;
    if (h->reqs) h->reqs->prev = r;
    h->reqs = r;
    if (h->in_flight++ == 0) update_refs(h);
    if (curl_multi_add_handle(h->multi, r->easy) != CURLM_OK) {
        snprintf(err, errlen, "could not start the transfer");
        free_req(r);
        return NULL;
    }
    kick(h);
    return r;
fail:
    if (r->easy) curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->hdrs);
    free(r->url_shown);
    free(r);
    return NULL;
}

void vx_http_cancel(vx_http_req *r) { free_req(r); }

static const char *classify(CURLcode rc, int too_large) {
    if (too_large) return "too_large";
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT: return "timeout";
    case CURLE_COULDNT_CONNECT: return "connect";
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: return "dns";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE: return "tls";
    default: return "transport";
    }
}

static void describe_failure(vx_http_req *r, CURLcode rc) {
    vx_http_result *res = &r->res;
    char msg[sizeof res->error];
    res->error_kind = classify(rc, r->too_large);
    if (r->too_large)
        snprintf(msg, sizeof msg, "%s %s: response body larger than max_body_bytes (%zu)",
                 r->method, r->url_shown, r->max_body);
    else if (rc == CURLE_OPERATION_TIMEDOUT)
        snprintf(msg, sizeof msg, "%s %s: timed out after %ld ms (%s)", r->method, r->url_shown,
                 r->timeout_ms, r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
    else
        snprintf(msg, sizeof msg, "%s %s: %s%s%s%s", r->method, r->url_shown,
                 curl_easy_strerror(rc), r->errbuf[0] ? " (" : "", r->errbuf,
                 r->errbuf[0] ? ")" : "");
    char *red = vx_log_redact(r->h->rt->log, msg, strlen(msg), NULL);
    snprintf(res->error, sizeof res->error, "%s", red ? red : msg);
    free(red);
}

static void complete(vx_http_req *r, CURLcode rc) {
    vx_http_result *res = &r->res;
    res->total_ms = (double)(uv_hrtime() - r->t0) / 1e6;
    if (rc == CURLE_OK) {
        res->ok = 1;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &res->status);
        long v = 0;
        curl_easy_getinfo(r->easy, CURLINFO_HTTP_VERSION, &v);
        res->http_version = v == CURL_HTTP_VERSION_2_0 ? 2 : v == CURL_HTTP_VERSION_3 ? 3 : 1;
        /* when the request was handed to the socket: curl's pretransfer
         * mark, on the same monotonic clock as the start */
        curl_off_t pre = 0;
        curl_easy_getinfo(r->easy, CURLINFO_PRETRANSFER_TIME_T, &pre);
        res->started_ns = r->t0;
        res->sent_ns = r->t0 + (uint64_t)pre * 1000u;
    } else {
        describe_failure(r, rc);
    }
    vx_http_done_fn done = r->done;
    void *ud = r->ud;
    done(r, res, ud);
    free_req(r);
}

static void check_done(vx_http *h) {
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(h->multi, &left))) {
        if (msg->msg != CURLMSG_DONE) continue;
        vx_http_req *r = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        CURLcode rc = msg->data.result;
        if (r) complete(r, rc);
    }
}
