/*
 * ws.c — WebSocket client connections: libwebsockets on the runtime's
 * libuv loop (foreign loop; the runtime owns signals and the loop's life).
 */
#include "ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>

#include "buf.h"
#include "log.h"
#include "lwsctx.h"

#define MAX_MESSAGE_DEFAULT (16u << 20)

struct vx_ws {
    vx_runtime *rt;
    struct lws_context *ctx;
    size_t open;       /* connections not yet closed */
    int destroying;
};

struct vx_ws_conn {
    vx_ws *ws;
    struct lws *wsi;
    const vx_ws_events *ev;   /* NULL once the owner closed it: no more callbacks */
    void *ud;
    lws_retry_bo_t idle;      /* ping/hangup policy; lws keeps a pointer to it */
    char *url_copy;           /* lws_parse_uri cuts this up; must outlive the connect */
    char *path;
    char **headers;           /* "Name:" and value pairs, NULL-terminated */
    size_t max_message;
    vx_buf rx;                /* fragments of the message being received */
    vx_lws_queue out;         /* messages to send */
    int established;
    int in_connect;           /* inside lws_client_connect_via_info */
    int failed_early;         /* a terminal callback ran inside connect */
    int close_code;           /* what we send when closing */
    int peer_code;            /* what the peer sent, 0 if nothing */
    char peer_reason[124];
    char error[256];
};

static void conn_free(vx_ws_conn *c) {
    if (!c) return;
    vx_lws_queue_clear(&c->out);
    vx_buf_free(&c->rx);
    if (c->headers)
        for (char **h = c->headers; *h; h++) free(*h);
    free(c->headers);
    free(c->url_copy);
    free(c->path);
    free(c);
}

/* The connection ended (connect failure or close): tell the owner once and
 * release it. Inside connect the caller reports the failure instead. */
static void conn_finish(vx_ws_conn *c, struct lws *wsi, int code, const char *reason) {
    lws_set_opaque_user_data(wsi, NULL);
    c->wsi = NULL;
    if (c->in_connect) {
        c->failed_early = 1;
        snprintf(c->error, sizeof c->error, "%s", reason);
        return;
    }
    c->ws->open--;
    if (c->ev && c->ev->closed) c->ev->closed(c, code, reason, c->ud);
    conn_free(c);
}

static int on_receive(vx_ws_conn *c, struct lws *wsi, const char *in, size_t len) {
    int first = lws_is_first_fragment(wsi), final = lws_is_final_fragment(wsi);
    if (first && final && c->rx.len == 0) { /* the common case: no copy */
        if (c->ev && c->ev->message) c->ev->message(c, in, len, lws_frame_is_binary(wsi), c->ud);
        return 0;
    }
    if (c->rx.len + len > c->max_message) {
        snprintf(c->error, sizeof c->error, "message larger than %zu bytes", c->max_message);
        lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, NULL, 0);
        return -1;
    }
    vx_buf_add(&c->rx, in, len);
    if (c->rx.oom) return -1;
    if (final) {
        if (c->ev && c->ev->message)
            c->ev->message(c, c->rx.p, c->rx.len, lws_frame_is_binary(wsi), c->ud);
        c->rx.len = 0;
    }
    return 0;
}

static int on_writable(vx_ws_conn *c, struct lws *wsi) {
    if (!c->ev) { /* owner closed it */
        lws_close_reason(wsi, (enum lws_close_status)c->close_code, NULL, 0);
        return -1;
    }
    int more = vx_lws_queue_write(&c->out, wsi);
    if (more < 0) {
        snprintf(c->error, sizeof c->error, "write failed");
        return -1;
    }
    if (more) lws_callback_on_writable(wsi);
    return 0;
}

static int add_headers(vx_ws_conn *c, struct lws *wsi, unsigned char **p, unsigned char *end) {
    if (!c->headers) return 0;
    for (char **h = c->headers; h[0] && h[1]; h += 2) {
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)h[0], (const unsigned char *)h[1],
                                        (int)strlen(h[1]), p, end))
            return -1;
    }
    return 0;
}

static void note_peer_close(vx_ws_conn *c, const unsigned char *in, size_t len) {
    if (len < 2) return;
    c->peer_code = (in[0] << 8) | in[1];
    size_t n = len - 2 < sizeof c->peer_reason - 1 ? len - 2 : sizeof c->peer_reason - 1;
    memcpy(c->peer_reason, in + 2, n);
    c->peer_reason[n] = '\0';
}

static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len) {
    (void)user;
    vx_ws_conn *c = wsi ? lws_get_opaque_user_data(wsi) : NULL;
    if (!c) return 0;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
        return add_headers(c, wsi, (unsigned char **)in, *(unsigned char **)in + len);
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        c->established = 1;
        if (c->ev && c->ev->open) c->ev->open(c, c->ud);
        if (c->out.head || !c->ev) lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        return on_receive(c, wsi, in, len);
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return on_writable(c, wsi);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        note_peer_close(c, in, len);
        return 0;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        char why[300];
        snprintf(why, sizeof why, "connect failed: %s", in && len ? (const char *)in : in ? (const char *)in : "unknown error");
        conn_finish(c, wsi, 1006, why);
        return 0;
    }
    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY: {
        char why[300];
        if (c->peer_code) snprintf(why, sizeof why, "closed by the server (%d%s%s)", c->peer_code,
                                   c->peer_reason[0] ? ": " : "", c->peer_reason);
        else snprintf(why, sizeof why, "connection lost%s%s", c->error[0] ? ": " : "", c->error);
        conn_finish(c, wsi, c->peer_code ? c->peer_code : 1006, why);
        return 0;
    }
    default:
        return 0;
    }
}

static const struct lws_protocols protocols[] = {
    {"vibex-ws", ws_callback, 0, 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

vx_ws *vx_ws_new(vx_runtime *rt, char *err, size_t errlen) {
    vx_ws *ws = calloc(1, sizeof *ws);
    if (!ws) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ws->rt = rt;
    /* lws logs through a process-wide setting; keep it to errors on stderr */
    lws_set_log_level(LLL_ERR, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.protocols = protocols;
    info.timeout_secs = 15;
    info.connect_timeout_secs = 10;
    info.pt_serv_buf_size = 65536;
    ws->ctx = vx_lws_context_new(rt, &info);
    if (!ws->ctx) {
        snprintf(err, errlen, "could not create the WebSocket context (is libwebsockets-evlib-uv installed?)");
        free(ws);
        return NULL;
    }
    return ws;
}

void vx_ws_free_begin(vx_ws *ws) {
    if (!ws) return;
    ws->destroying = 1;
    lws_context_destroy(ws->ctx);
}

void vx_ws_free_end(vx_ws *ws) {
    if (!ws) return;
    lws_context_destroy(ws->ctx);
    free(ws);
}

/* Keep each header as a "Name:" / value pair, the form lws wants. */
static int copy_headers(vx_ws_conn *c, const char *const *headers, char *err, size_t errlen) {
    size_t n = 0;
    while (headers && headers[n]) n++;
    if (!n) return 0;
    c->headers = calloc(2 * n + 1, sizeof *c->headers);
    if (!c->headers) return snprintf(err, errlen, "out of memory"), -1;
    for (size_t i = 0; i < n; i++) {
        const char *colon = strchr(headers[i], ':');
        if (!colon || colon == headers[i]) return snprintf(err, errlen, "bad header '%s' (want 'Name: value')", headers[i]), -1;
        const char *v = colon + 1;
        while (*v == ' ') v++;
        c->headers[2 * i] = strndup(headers[i], (size_t)(colon - headers[i]) + 1);
        c->headers[2 * i + 1] = strdup(v);
        if (!c->headers[2 * i] || !c->headers[2 * i + 1]) return snprintf(err, errlen, "out of memory"), -1;
    }
    return 0;
}

static int fill_connect_info(vx_ws_conn *c, const vx_ws_opts *o, struct lws_client_connect_info *ci,
                             char *err, size_t errlen) {
    const char *scheme = NULL, *host = NULL, *path = NULL;
    int port = 0;
    c->url_copy = strdup(o->url);
    if (!c->url_copy) return snprintf(err, errlen, "out of memory"), -1;
    if (lws_parse_uri(c->url_copy, &scheme, &host, &port, &path) || !host[0])
        return snprintf(err, errlen, "cannot parse URL '%s' (want ws://host[:port]/path or wss://…)", o->url), -1;
    int tls = !strcmp(scheme, "wss") || !strcmp(scheme, "https");
    if (!tls && strcmp(scheme, "ws") && strcmp(scheme, "http"))
        return snprintf(err, errlen, "URL '%s': scheme must be ws or wss", o->url), -1;
    size_t plen = strlen(path);
    c->path = malloc(plen + 2);
    if (!c->path) return snprintf(err, errlen, "out of memory"), -1;
    c->path[0] = '/';
    memcpy(c->path + 1, path, plen + 1);
    memset(ci, 0, sizeof *ci);
    ci->context = c->ws->ctx;
    ci->address = host;
    ci->host = host;
    ci->origin = host;
    ci->port = port;
    ci->path = c->path;
    ci->protocol = NULL;
    ci->local_protocol_name = protocols[0].name;
    ci->ssl_connection = tls ? LCCSCF_USE_SSL : 0;
    if (tls && o->insecure)
        ci->ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK | LCCSCF_ALLOW_EXPIRED;
    ci->opaque_user_data = c;
    ci->retry_and_idle_policy = &c->idle;
    ci->pwsi = &c->wsi;
    return 0;
}

vx_ws_conn *vx_ws_connect(vx_ws *ws, const vx_ws_opts *o, const vx_ws_events *ev, void *ud,
                          char *err, size_t errlen) {
    if (!o->url) return snprintf(err, errlen, "a url is required"), NULL;
    vx_ws_conn *c = calloc(1, sizeof *c);
    if (!c) return snprintf(err, errlen, "out of memory"), NULL;
    c->ws = ws;
    c->ev = ev;
    c->ud = ud;
    c->close_code = LWS_CLOSE_STATUS_NORMAL;
    c->max_message = o->max_message ? o->max_message : MAX_MESSAGE_DEFAULT;
    unsigned ping = o->ping_s ? o->ping_s : 30;
    c->idle.secs_since_valid_ping = (uint16_t)ping;
    c->idle.secs_since_valid_hangup = (uint16_t)(o->hangup_s ? o->hangup_s : ping + 30);
    struct lws_client_connect_info ci;
    if (copy_headers(c, o->headers, err, errlen) || fill_connect_info(c, o, &ci, err, errlen)) {
        conn_free(c);
        return NULL;
    }
    c->in_connect = 1;
    struct lws *wsi = lws_client_connect_via_info(&ci);
    c->in_connect = 0;
    if (!wsi || c->failed_early) {
        snprintf(err, errlen, "%s", c->error[0] ? c->error : "could not start the connection");
        if (wsi && !c->failed_early) lws_set_opaque_user_data(wsi, NULL);
        conn_free(c);
        return NULL;
    }
    ws->open++;
    return c;
}

int vx_ws_send(vx_ws_conn *c, const char *p, size_t n, int binary) {
    if (!c->wsi || !c->ev) return -1;
    if (vx_lws_queue_push(&c->out, p, n, binary)) return -1;
    if (c->established) lws_callback_on_writable(c->wsi);
    return 0;
}

void vx_ws_close(vx_ws_conn *c, int code, const char *reason) {
    (void)reason;
    c->ev = NULL;
    c->ud = NULL;
    c->close_code = code ? code : LWS_CLOSE_STATUS_NORMAL;
    if (!c->wsi) return;
    if (c->established) lws_callback_on_writable(c->wsi);
    else lws_set_timeout(c->wsi, PENDING_TIMEOUT_AWAITING_SERVER_RESPONSE, LWS_TO_KILL_ASYNC);
}

void vx_ws_read_enable(vx_ws_conn *c, int enable) {
    if (!c->wsi) return;
    lws_rx_flow_control(c->wsi, (enable ? LWS_RXFLOW_REASON_APPLIES_ENABLE : LWS_RXFLOW_REASON_APPLIES_DISABLE) |
                                    LWS_RXFLOW_REASON_USER_BOOL | LWS_RXFLOW_REASON_FLAG_PROCESS_NOW);
}

size_t vx_ws_pending(const vx_ws_conn *c) { return c->out.bytes; }

size_t vx_ws_open_count(const vx_ws *ws) { return ws ? ws->open : 0; }
