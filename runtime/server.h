/*
 * server.h — an HTTP/1.1 + WebSocket server on the runtime's libuv loop
 * (libwebsockets, its own context and vhost; the runtime owns signals).
 *
 * Static files under "/" come straight from a directory (lws's file mount:
 * no Lua runs for them). Requests under the dynamic prefixes ("/api",
 * "/metrics") are read whole (headers, query, body up to max_body) and
 * handed to the owner as a vx_srv_req, which answers with
 * vx_srv_respond() whenever it is ready — the connection waits, the loop
 * does not. WebSocket clients on ws_path are vx_srv_ws: whole messages in,
 * queued messages out; a client that lets more than max_ws_queue bytes pile
 * up is disconnected instead of growing memory.
 *
 * Requests and WebSocket clients are reference counted between the
 * connection and the owner: either side may go first; the object lives until
 * both released it (vx_srv_req_release / vx_srv_ws_release for the owner).
 *
 * Not thread-safe, like lws itself: everything runs on the loop thread.
 */
#ifndef VX_SERVER_H
#define VX_SERVER_H

#include <stddef.h>

#include "vx.h"

typedef struct vx_server vx_server;
typedef struct vx_srv_req vx_srv_req;
typedef struct vx_srv_ws vx_srv_ws;

typedef struct vx_server_opts {
    const char *bind;             /* address to listen on; NULL = 127.0.0.1 */
    int port;                     /* 0 = any free port (see vx_server_port) */
    const char *static_dir;       /* served at "/", NULL = none */
    const char *const *prefixes;  /* dynamic URL prefixes, NULL-terminated */
    const char *ws_path;          /* WebSocket endpoint, NULL = none */
    size_t max_body;              /* larger bodies get 413; 0 = 1 MiB */
    size_t max_ws_queue;          /* 0 = 4 MiB */
    unsigned timeout_s;           /* slow clients (headers, body) are dropped; 0 = 10 */
    unsigned max_conns;           /* connections beyond are refused; 0 = 1024 */
    const char *tls_cert, *tls_key; /* PEM files: HTTPS / WSS when both set */
} vx_server_opts;

typedef struct vx_server_events {
    void (*request)(vx_srv_req *r, void *ud);
    void (*ws_open)(vx_srv_ws *c, void *ud);
    void (*ws_message)(vx_srv_ws *c, const char *p, size_t n, void *ud);
    void (*ws_closed)(vx_srv_ws *c, void *ud); /* the owner still holds its reference */
} vx_server_events;

typedef struct vx_server_stats {
    double requests, rejected_body, ws_opened, ws_dropped_slow;
    size_t ws_clients, pending;
} vx_server_stats;

vx_server *vx_server_new(vx_runtime *rt, const vx_server_opts *o, const vx_server_events *ev, void *ud,
                         char *err, size_t errlen);
int vx_server_port(const vx_server *s);
void vx_server_get_stats(const vx_server *s, vx_server_stats *st);
/* Stop listening and drop every connection; no event is delivered after
 * this. The memory goes at the runtime's exit (vx_server_reap_all). */
void vx_server_close(vx_server *s);
/* At runtime exit: finish what vx_server_close started, for every server. */
void vx_server_reap_all(vx_runtime *rt);

/* A request: read-only views, valid until released. */
const char *vx_srv_req_method(const vx_srv_req *r);
const char *vx_srv_req_path(const vx_srv_req *r);
const char *vx_srv_req_query(const vx_srv_req *r);
const char *vx_srv_req_header(const vx_srv_req *r, const char *name); /* lower-case name; NULL if absent */
const char *vx_srv_req_body(const vx_srv_req *r, size_t *len);
const char *vx_srv_req_peer(const vx_srv_req *r);
/* Answer: 0, or -1 when the client is gone or it was answered already.
 * headers: "Name" / "value" pairs, NULL-terminated (may be NULL). */
int vx_srv_respond(vx_srv_req *r, int status, const char *content_type, const char *const *headers,
                   const char *body, size_t len);
void vx_srv_req_release(vx_srv_req *r);

const char *vx_srv_ws_query(const vx_srv_ws *c);
const char *vx_srv_ws_header(const vx_srv_ws *c, const char *name);
const char *vx_srv_ws_peer(const vx_srv_ws *c);
unsigned long vx_srv_ws_id(const vx_srv_ws *c);
/* 0, or -1 when the client is gone (or was dropped for being too slow). */
int vx_srv_ws_send(vx_srv_ws *c, const char *p, size_t n);
void vx_srv_ws_close(vx_srv_ws *c, int code);
void vx_srv_ws_release(vx_srv_ws *c);

#endif
