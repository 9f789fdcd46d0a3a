/*
 * server.c — HTTP + WebSocket server: libwebsockets on the runtime's libuv
 * loop (see server.h). One lws context per server, so its limits (fds,
 * timeouts) are its own and a flood of clients cannot use up the sockets
 * the venue connections need.
 */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "buf.h"
#include "lwsctx.h"

#define KIND_REQ 1
#define KIND_WS 2
#define CHUNK (16u << 10)
#define MAX_WS_MESSAGE (64u << 10)

/* the request headers the owner can read (lower-case names) */
static const struct { const char *name; enum lws_token_indexes tok; } HEADERS[] = {
    {"authorization", WSI_TOKEN_HTTP_AUTHORIZATION},
    {"content-type", WSI_TOKEN_HTTP_CONTENT_TYPE},
    {"origin", WSI_TOKEN_ORIGIN},
    {"user-agent", WSI_TOKEN_HTTP_USER_AGENT},
    {"accept", WSI_TOKEN_HTTP_ACCEPT},
    {"x-forwarded-for", WSI_TOKEN_X_FORWARDED_FOR},
};
#define N_HEADERS (sizeof HEADERS / sizeof HEADERS[0])

struct vx_server {
    vx_runtime *rt;
    struct lws_context *ctx;
    struct lws_vhost *vh;
    const vx_server_events *ev;
    void *ud;
    size_t max_body, max_ws_queue;
    unsigned timeout_s;
    char *ws_path;
    struct lws_http_mount *mounts;
    size_t n_mounts;
    char **strings;          /* what the mounts point at */
    vx_server_stats st;
    unsigned long next_ws_id;
    struct lws **wsis;       /* every live connection: closed at once by vx_server_close */
    size_t n_wsis, cap_wsis;
    size_t n_strings;
    int closed;              /* vx_server_close ran: no more events */
    vx_server *next;         /* the runtime's list of servers */
};

/* what both kinds start with: the connection finds its object by it */
typedef struct conn_head {
    int kind;
    int refs;                /* the connection's and the owner's */
    struct lws *wsi;         /* NULL once the connection is gone */
    vx_server *srv;
    char peer[64];
    char *hdr[N_HEADERS];
} conn_head;

struct vx_srv_req {
    conn_head h;
    char method[8];
    char *path, *query;
    vx_buf body;
    size_t expect;           /* Content-Length */
    int dispatched, answered, headers_sent;
    int close_after;         /* lws would read the next request as this one's body */
    int pending;             /* counted in st.pending: handed to the owner, not answered yet */
    int status;
    char *content_type;
    char **out_headers;
    char *out;               /* LWS_PRE headroom, then the body */
    size_t out_len, out_pos;
};

struct vx_srv_ws {
    conn_head h;
    unsigned long id;
    char *query;
    vx_buf rx;
    vx_lws_queue out;        /* messages to send */
    int close_code;          /* set: close at the next writeable */
    int opened;              /* the owner was told */
};

/* ---- shared ------------------------------------------------------------------------------------ */

static char *copy_token(struct lws *wsi, enum lws_token_indexes tok) {
    int n = lws_hdr_total_length(wsi, tok);
    if (n <= 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    if (lws_hdr_copy(wsi, s, n + 1, tok) < 0) {
        free(s);
        return NULL;
    }
    return s;
}

/* The query as one "k=v&k2=v2" string: lws keeps each argument apart,
 * already decoded, so a '&' or '%' inside one is encoded again here. */
static char *copy_query(struct lws *wsi) {
    int total = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS);
    if (total <= 0) return NULL;
    vx_buf b = {0};
    char frag[2048];
    for (int i = 0;; i++) {
        int n = lws_hdr_copy_fragment(wsi, frag, sizeof frag, WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n <= 0) break;
        if (b.len) vx_buf_add(&b, "&", 1);
        for (int k = 0; k < n; k++) {
            char c = frag[k];
            if (c == '&' || c == '%' || c == '+') {
                char esc[4];
                snprintf(esc, sizeof esc, "%%%02X", (unsigned char)c);
                vx_buf_add(&b, esc, 3);
            } else {
                vx_buf_add(&b, &c, 1);
            }
        }
    }
    vx_buf_add(&b, "", 1);
    if (b.oom) {
        vx_buf_free(&b);
        return NULL;
    }
    return b.p; /* the buffer's bytes, NUL-terminated, owned by the caller */
}

static void head_init(conn_head *h, int kind, vx_server *srv, struct lws *wsi) {
    h->kind = kind;
    h->refs = 2;
    h->wsi = wsi;
    h->srv = srv;
    lws_get_peer_simple(wsi, h->peer, sizeof h->peer);
    for (size_t i = 0; i < N_HEADERS; i++) h->hdr[i] = copy_token(wsi, HEADERS[i].tok);
}

static void head_free(conn_head *h) {
    for (size_t i = 0; i < N_HEADERS; i++) free(h->hdr[i]);
}

static const char *head_header(const conn_head *h, const char *name) {
    for (size_t i = 0; i < N_HEADERS; i++)
        if (!strcasecmp(HEADERS[i].name, name)) return h->hdr[i];
    return NULL;
}

/* ---- HTTP requests ------------------------------------------------------------------------------ */

static void req_free(vx_srv_req *r) {
    head_free(&r->h);
    free(r->path);
    free(r->query);
    vx_buf_free(&r->body);
    free(r->content_type);
    if (r->out_headers)
        for (char **p = r->out_headers; *p; p++) free(*p);
    free(r->out_headers);
    free(r->out);
    free(r);
}

static void req_unref(vx_srv_req *r) {
    if (--r->h.refs == 0) req_free(r);
}

/* the connection is done with the request (answered, or gone) */
static void req_detach(struct lws *wsi, vx_srv_req *r) {
    lws_set_opaque_user_data(wsi, NULL);
    r->h.wsi = NULL;
    if (!r->dispatched) r->h.refs--; /* the owner never saw it */
    req_unref(r);
}

static const char *method_of(struct lws *wsi, char **uri) {
    static const struct { const char *m; enum lws_token_indexes t; } M[] = {
        {"GET", WSI_TOKEN_GET_URI},       {"POST", WSI_TOKEN_POST_URI},     {"PUT", WSI_TOKEN_PUT_URI},
        {"PATCH", WSI_TOKEN_PATCH_URI},   {"DELETE", WSI_TOKEN_DELETE_URI}, {"OPTIONS", WSI_TOKEN_OPTIONS_URI},
        {"HEAD", WSI_TOKEN_HEAD_URI},
    };
    for (size_t i = 0; i < sizeof M / sizeof M[0]; i++) {
        if (lws_hdr_total_length(wsi, M[i].t) > 0) {
            *uri = copy_token(wsi, M[i].t);
            return M[i].m;
        }
    }
    return NULL;
}

/* An answer the server gives itself (bad request, too large). */
static int respond_now(vx_srv_req *r, int status, const char *msg) {
    char body[256];
    int n = snprintf(body, sizeof body, "{\"error\":{\"kind\":\"invalid\",\"message\":\"%s\"}}", msg);
    return vx_srv_respond(r, status, "application/json", NULL, body, (size_t)n);
}

static void dispatch(vx_srv_req *r) {
    vx_server *s = r->h.srv;
    r->dispatched = 1;
    r->pending = 1;
    s->st.requests++;
    s->st.pending++;
    if (s->ev->request) s->ev->request(r, s->ud);
    else vx_srv_req_release(r);
}

static int on_http(vx_server *s, struct lws *wsi) {
    vx_srv_req *r = calloc(1, sizeof *r);
    if (!r) return -1;
    head_init(&r->h, KIND_REQ, s, wsi);
    lws_set_opaque_user_data(wsi, r);
    const char *m = method_of(wsi, &r->path);
    if (!m || !r->path) {
        snprintf(r->method, sizeof r->method, "GET");
        r->dispatched = 1; /* answered by us: the owner never holds it */
        r->h.refs--;
        return respond_now(r, 405, "method not allowed") ? -1 : 0;
    }
    snprintf(r->method, sizeof r->method, "%s", m);
    r->query = copy_query(wsi);
    char cl[32];
    if (lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) r->expect = strtoull(cl, NULL, 10);
    if (r->expect > s->max_body) {
        s->st.rejected_body++;
        r->dispatched = 1;
        r->h.refs--;
        char msg[96];
        snprintf(msg, sizeof msg, "request body larger than %zu bytes", s->max_body);
        return respond_now(r, 413, msg) ? -1 : 0;
    }
    int chunked = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0;
    int has_length = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0;
    if (r->expect > 0 || chunked) {
        lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, (int)s->timeout_s);
        return 0;
    }
    /* a POST, PUT or PATCH without Content-Length has no body (RFC 9112),
     * but lws reads until the connection ends: answer, then close */
    if (!has_length && (!strcmp(m, "POST") || !strcmp(m, "PUT") || !strcmp(m, "PATCH"))) r->close_after = 1;
    dispatch(r);
    return 0;
}

static int on_body(vx_srv_req *r, const void *in, size_t len) {
    if (r->body.len + len > r->h.srv->max_body) return -1;
    vx_buf_add(&r->body, in, len);
    return r->body.oom ? -1 : 0;
}

static int write_headers(vx_srv_req *r, struct lws *wsi) {
    unsigned char buf[LWS_PRE + 4096], *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf - 1;
    if (lws_add_http_common_headers(wsi, (unsigned)r->status, r->content_type, r->out_len, &p, end)) return -1;
    static const char conn_close[] = "close";
    if (r->close_after && lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (const unsigned char *)conn_close,
                                                       (int)sizeof conn_close - 1, &p, end))
        return -1;
    for (char **h = r->out_headers; h && h[0] && h[1]; h += 2)
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)h[0], (const unsigned char *)h[1],
                                        (int)strlen(h[1]), &p, end))
            return -1;
    if (lws_finalize_write_http_header(wsi, start, &p, end)) return -1;
    r->headers_sent = 1;
    return 0;
}

static int on_http_writeable(vx_srv_req *r, struct lws *wsi) {
    if (!r->answered) return 0;
    if (!r->headers_sent) {
        if (write_headers(r, wsi)) return -1;
        if (r->out_len == 0 || !strcmp(r->method, "HEAD")) goto done;
        lws_callback_on_writable(wsi);
        return 0;
    }
    size_t n = r->out_len - r->out_pos;
    if (n > CHUNK) n = CHUNK;
    int last = r->out_pos + n == r->out_len;
    unsigned char *at = (unsigned char *)r->out + LWS_PRE + r->out_pos;
    if (lws_write(wsi, at, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n) return -1;
    r->out_pos += n;
    if (!last) {
        lws_callback_on_writable(wsi);
        return 0;
    }
done:;
    int close_after = r->close_after;
    req_detach(wsi, r);
    if (close_after) return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* ---- WebSocket clients --------------------------------------------------------------------------- */

static void ws_unref(vx_srv_ws *c) {
    if (--c->h.refs) return;
    head_free(&c->h);
    free(c->query);
    vx_buf_free(&c->rx);
    vx_lws_queue_clear(&c->out);
    free(c);
}

static int on_ws_established(vx_server *s, struct lws *wsi) {
    vx_srv_ws *c = calloc(1, sizeof *c);
    if (!c) return -1;
    head_init(&c->h, KIND_WS, s, wsi);
    c->id = ++s->next_ws_id;
    c->query = copy_query(wsi);
    lws_set_opaque_user_data(wsi, c);
    s->st.ws_opened++;
    s->st.ws_clients++;
    c->opened = 1;
    if (s->ev->ws_open) s->ev->ws_open(c, s->ud);
    else c->h.refs--;
    return 0;
}

static int on_ws_receive(vx_srv_ws *c, struct lws *wsi, const char *in, size_t len) {
    if (c->rx.len + len > MAX_WS_MESSAGE) {
        lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, NULL, 0);
        return -1;
    }
    vx_buf_add(&c->rx, in, len);
    if (c->rx.oom) return -1;
    if (!lws_is_final_fragment(wsi)) return 0;
    vx_server *s = c->h.srv;
    if (s->ev->ws_message && !s->closed) s->ev->ws_message(c, c->rx.p, c->rx.len, s->ud);
    c->rx.len = 0;
    return 0;
}

static int on_ws_writeable(vx_srv_ws *c, struct lws *wsi) {
    if (c->close_code) {
        lws_close_reason(wsi, (enum lws_close_status)c->close_code, NULL, 0);
        return -1;
    }
    int more = vx_lws_queue_write(&c->out, wsi);
    if (more < 0) return -1;
    if (more) lws_callback_on_writable(wsi);
    return 0;
}

static void on_ws_closed(vx_srv_ws *c, struct lws *wsi) {
    vx_server *s = c->h.srv;
    lws_set_opaque_user_data(wsi, NULL);
    c->h.wsi = NULL;
    s->st.ws_clients--;
    if (s->ev->ws_closed && !s->closed && c->h.refs == 2) s->ev->ws_closed(c, s->ud);
    ws_unref(c);
}

/* ---- every connection, to close them all --------------------------------------------------------- */

static void track_wsi(vx_server *s, struct lws *wsi) {
    for (size_t i = 0; i < s->n_wsis; i++)
        if (s->wsis[i] == wsi) return;
    if (s->n_wsis == s->cap_wsis) {
        size_t cap = s->cap_wsis ? 2 * s->cap_wsis : 64;
        struct lws **p = realloc(s->wsis, cap * sizeof *p);
        if (!p) return; /* untracked: it ends by its own timeout */
        s->wsis = p;
        s->cap_wsis = cap;
    }
    s->wsis[s->n_wsis++] = wsi;
}

static void untrack_wsi(vx_server *s, struct lws *wsi) {
    for (size_t i = 0; i < s->n_wsis; i++) {
        if (s->wsis[i] == wsi) {
            s->wsis[i] = s->wsis[--s->n_wsis];
            return;
        }
    }
}

/* ---- the protocol callback ------------------------------------------------------------------------ */

static int ws_path_ok(vx_server *s, struct lws *wsi) {
    char uri[256];
    if (!s->ws_path || lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0) return 0;
    return !strcmp(uri, s->ws_path);
}

static int srv_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len) {
    (void)user;
    struct lws_context *ctx = lws_get_context(wsi);
    vx_server *s = ctx ? lws_context_user(ctx) : NULL;
    conn_head *h = lws_get_opaque_user_data(wsi);
    if (!s) return lws_callback_http_dummy(wsi, reason, user, in, len);
    switch (reason) {
    case LWS_CALLBACK_HTTP_BIND_PROTOCOL:
        if (s->closed) return -1;
        track_wsi(s, wsi);
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    case LWS_CALLBACK_HTTP:
        if (s->closed) return -1;
        if (h && h->kind == KIND_REQ) req_detach(wsi, (vx_srv_req *)h); /* keep-alive: the last one is over */
        return on_http(s, wsi);
    case LWS_CALLBACK_HTTP_BODY:
        if (h && h->kind == KIND_REQ && on_body((vx_srv_req *)h, in, len)) {
            s->st.rejected_body++;
            return -1;
        }
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (h && h->kind == KIND_REQ && !((vx_srv_req *)h)->dispatched) {
            lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
            dispatch((vx_srv_req *)h);
        }
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (s->closed) return -1;
        if (h && h->kind == KIND_REQ) return on_http_writeable((vx_srv_req *)h, wsi);
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    case LWS_CALLBACK_CLOSED_HTTP:
        untrack_wsi(s, wsi);
        if (h && h->kind == KIND_REQ) req_detach(wsi, (vx_srv_req *)h);
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (h && h->kind == KIND_REQ) req_detach(wsi, (vx_srv_req *)h);
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return s->closed || !ws_path_ok(s, wsi);
    case LWS_CALLBACK_ESTABLISHED:
        track_wsi(s, wsi);
        return on_ws_established(s, wsi);
    case LWS_CALLBACK_RECEIVE:
        return h && h->kind == KIND_WS ? on_ws_receive((vx_srv_ws *)h, wsi, in, len) : 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (s->closed) {
            lws_close_reason(wsi, LWS_CLOSE_STATUS_GOINGAWAY, NULL, 0);
            return -1;
        }
        return h && h->kind == KIND_WS ? on_ws_writeable((vx_srv_ws *)h, wsi) : 0;
    case LWS_CALLBACK_CLOSED:
        untrack_wsi(s, wsi);
        if (h && h->kind == KIND_WS) on_ws_closed((vx_srv_ws *)h, wsi);
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        untrack_wsi(s, wsi);
        if (h && h->kind == KIND_REQ) req_detach(wsi, (vx_srv_req *)h);
        else if (h && h->kind == KIND_WS) on_ws_closed((vx_srv_ws *)h, wsi);
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

static const struct lws_protocols protocols[] = {
    {"vibex-api", srv_callback, 0, 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* ---- the server ------------------------------------------------------------------------------------- */

/* s->strings has room for every mount's string and a NULL after them */
static char *keep(vx_server *s, const char *str) {
    char *c = strdup(str);
    if (c) s->strings[s->n_strings++] = c;
    return c;
}

static void free_strings(vx_server *s) {
    for (char **p = s->strings; p && *p; p++) free(*p);
    free(s->strings);
    s->strings = NULL;
}

/* "/" for the files, then one callback mount per dynamic prefix */
static int build_mounts(vx_server *s, const vx_server_opts *o) {
    size_t n = o->static_dir ? 1 : 0;
    for (const char *const *p = o->prefixes; p && *p; p++) n++;
    if (!n) return 0;
    s->strings = calloc(n + 1, sizeof *s->strings);
    s->mounts = calloc(n, sizeof *s->mounts);
    if (!s->mounts || !s->strings) return -1;
    size_t i = 0;
    for (const char *const *p = o->prefixes; p && *p; p++, i++) {
        struct lws_http_mount *m = &s->mounts[i];
        if (!(m->mountpoint = keep(s, *p))) return -1;
        m->mountpoint_len = (unsigned char)strlen(*p);
        m->origin_protocol = LWSMPRO_CALLBACK;
        m->protocol = protocols[0].name;
        s->n_mounts++;
    }
    if (o->static_dir) {
        struct lws_http_mount *m = &s->mounts[i];
        m->mountpoint = "/";
        m->mountpoint_len = 1;
        if (!(m->origin = keep(s, o->static_dir))) return -1;
        m->def = "index.html";
        m->origin_protocol = LWSMPRO_FILE;
        s->n_mounts++;
    }
    for (size_t k = 0; k + 1 < s->n_mounts; k++) s->mounts[k].mount_next = &s->mounts[k + 1];
    return 0;
}

static void server_free(vx_server *s) {
    free(s->wsis);
    free_strings(s);
    free(s->mounts);
    free(s->ws_path);
    free(s);
}

/* Can we listen there? Asked before lws is: a failed lws_create_context on
 * a foreign loop (4.1) leaves handles in the loop that crash it later. */
static int check_listen(const char *bind_addr, int port, char *err, size_t errlen) {
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, bind_addr, &sa.sin_addr) != 1)
        return snprintf(err, errlen, "cannot listen on %s: not an IPv4 address (use 127.0.0.1 or 0.0.0.0)", bind_addr), -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return snprintf(err, errlen, "cannot make a socket: %s", strerror(errno)), -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    int e = errno;
    close(fd);
    if (rc == 0) return 0;
    if (e == EADDRINUSE)
        return snprintf(err, errlen, "cannot listen on %s:%d: the port is in use (another vibex? set api.port)", bind_addr, port), -1;
    return snprintf(err, errlen, "cannot listen on %s:%d: %s", bind_addr, port, strerror(e)), -1;
}

vx_server *vx_server_new(vx_runtime *rt, const vx_server_opts *o, const vx_server_events *ev, void *ud,
                         char *err, size_t errlen) {
    if (check_listen(o->bind ? o->bind : "127.0.0.1", o->port, err, errlen)) return NULL;
    vx_server *s = calloc(1, sizeof *s);
    if (!s) return snprintf(err, errlen, "out of memory"), NULL;
    s->rt = rt;
    s->ev = ev;
    s->ud = ud;
    s->max_body = o->max_body ? o->max_body : (1u << 20);
    s->max_ws_queue = o->max_ws_queue ? o->max_ws_queue : (4u << 20);
    s->timeout_s = o->timeout_s ? o->timeout_s : 10;
    if ((o->ws_path && !(s->ws_path = strdup(o->ws_path))) || build_mounts(s, o)) {
        server_free(s);
        return snprintf(err, errlen, "out of memory"), NULL;
    }
    lws_set_log_level(LLL_ERR, NULL); /* process-wide in lws; errors only, on stderr */
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = o->port;
    info.iface = o->bind ? o->bind : "127.0.0.1";
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6 | LWS_SERVER_OPTION_VALIDATE_UTF8;
    if (o->tls_cert && o->tls_key) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = o->tls_cert;
        info.ssl_private_key_filepath = o->tls_key;
    }
    info.protocols = protocols;
    info.mounts = s->mounts;
    info.user = s;
    info.timeout_secs = s->timeout_s;
    info.keepalive_timeout = (int)s->timeout_s;
    info.fd_limit_per_thread = (o->max_conns ? o->max_conns : 1024) + 16;
    info.pt_serv_buf_size = 65536;
    info.vhost_name = "vibex";
    info.server_string = "vibex";
    s->ctx = vx_lws_context_new(rt, &info);
    if (!s->ctx || !(s->vh = lws_get_vhost_by_name(s->ctx, "vibex")) || lws_get_vhost_listen_port(s->vh) <= 0) {
        snprintf(err, errlen, "cannot listen on %s:%d (in use, or not an address of this machine?)", info.iface, o->port);
        if (s->ctx) {
            lws_context_destroy(s->ctx);
            for (int i = 0; i < 8; i++) uv_run(&rt->loop, UV_RUN_NOWAIT);
            lws_context_destroy(s->ctx);
        }
        server_free(s);
        return NULL;
    }
    s->next = rt->servers;
    rt->servers = s;
    return s;
}

int vx_server_port(const vx_server *s) { return s->vh ? lws_get_vhost_listen_port(s->vh) : -1; }

void vx_server_get_stats(const vx_server *s, vx_server_stats *st) { *st = s->st; }

/* lws on a foreign loop closes its handles through the loop: the first
 * destroy starts that, the second (once the loop turned) frees the context.
 * Both run at the runtime's exit (vx_server_reap_all), outside uv_run, as
 * for the WebSocket client: a destroy from a callback inside the loop made
 * libuv abort in its closing phase with lws 4.1.6 (seen). Until then a
 * closed server answers nothing and its connections are ended. */
void vx_server_close(vx_server *s) {
    if (!s || s->closed) return;
    s->closed = 1;
    /* every connection ends at its next writeable callback, so none keeps
     * the loop, and the run, alive */
    for (size_t i = 0; i < s->n_wsis; i++) {
        lws_callback_on_writable(s->wsis[i]); /* busy ones close there */
        lws_set_timeout(s->wsis[i], PENDING_TIMEOUT_HTTP_KEEPALIVE_IDLE, 1); /* idle keep-alive ones by their timeout */
    }
}

void vx_server_reap_all(vx_runtime *rt) {
    if (!rt->servers) return;
    for (vx_server *s = rt->servers; s; s = s->next) lws_context_destroy(s->ctx);
    for (int i = 0; i < 8; i++) uv_run(&rt->loop, UV_RUN_NOWAIT);
    while (rt->servers) {
        vx_server *s = rt->servers;
        rt->servers = s->next;
        lws_context_destroy(s->ctx);
        server_free(s);
    }
}

/* ---- the owner's side ----------------------------------------------------------------------------- */

const char *vx_srv_req_method(const vx_srv_req *r) { return r->method; }
const char *vx_srv_req_path(const vx_srv_req *r) { return r->path; }
const char *vx_srv_req_query(const vx_srv_req *r) { return r->query; }
const char *vx_srv_req_header(const vx_srv_req *r, const char *name) { return head_header(&r->h, name); }
const char *vx_srv_req_peer(const vx_srv_req *r) { return r->h.peer; }

const char *vx_srv_req_body(const vx_srv_req *r, size_t *len) {
    *len = r->body.len;
    return r->body.len ? r->body.p : "";
}

static char **copy_pairs(const char *const *headers) {
    size_t n = 0;
    while (headers && headers[n]) n++;
    char **out = calloc(n + 1, sizeof *out);
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) {
        /* lws wants "Name:" */
        size_t l = strlen(headers[i]);
        out[i] = malloc(l + 2);
        if (!out[i]) return out;
        memcpy(out[i], headers[i], l + 1);
        if (i % 2 == 0) memcpy(out[i] + l, ":", 2);
    }
    return out;
}

int vx_srv_respond(vx_srv_req *r, int status, const char *content_type, const char *const *headers,
                   const char *body, size_t len) {
    if (r->answered || !r->h.wsi) return -1;
    r->out = malloc(LWS_PRE + len + 1);
    r->content_type = strdup(content_type ? content_type : "application/json");
    r->out_headers = copy_pairs(headers);
    if (!r->out || !r->content_type || !r->out_headers) return -1;
    memcpy(r->out + LWS_PRE, body, len);
    r->out_len = len;
    r->status = status;
    r->answered = 1;
    if (r->pending) {
        r->pending = 0;
        r->h.srv->st.pending--;
    }
    lws_callback_on_writable(r->h.wsi);
    return 0;
}

void vx_srv_req_release(vx_srv_req *r) {
    /* dropped unanswered (an error in the handler): the client must not hang */
    if (!r->answered && r->h.wsi) respond_now(r, 500, "the request was dropped without an answer");
    req_unref(r);
}

const char *vx_srv_ws_query(const vx_srv_ws *c) { return c->query; }
const char *vx_srv_ws_header(const vx_srv_ws *c, const char *name) { return head_header(&c->h, name); }
const char *vx_srv_ws_peer(const vx_srv_ws *c) { return c->h.peer; }
unsigned long vx_srv_ws_id(const vx_srv_ws *c) { return c->id; }

int vx_srv_ws_send(vx_srv_ws *c, const char *p, size_t n) {
    if (!c->h.wsi || c->close_code) return -1;
    if (c->out.bytes + n > c->h.srv->max_ws_queue) { /* it does not read: it goes, memory stays bounded */
        c->h.srv->st.ws_dropped_slow++;
        vx_lws_queue_clear(&c->out);
        vx_srv_ws_close(c, 1008);
        return -1;
    }
    if (vx_lws_queue_push(&c->out, p, n, 0)) return -1;
    lws_callback_on_writable(c->h.wsi);
    return 0;
}

void vx_srv_ws_close(vx_srv_ws *c, int code) {
    if (!c->h.wsi || c->close_code) return;
    c->close_code = code ? code : LWS_CLOSE_STATUS_NORMAL;
    lws_callback_on_writable(c->h.wsi);
}

void vx_srv_ws_release(vx_srv_ws *c) {
    if (c->h.wsi) vx_srv_ws_close(c, LWS_CLOSE_STATUS_GOINGAWAY);
    ws_unref(c);
}
