/*
 * ws.h — WebSocket client connections on the runtime's libuv loop
 * (libwebsockets with its libuv event library; TLS through OpenSSL).
 *
 * One lws context per runtime, created on the first connection. Each
 * connection delivers whole messages (fragments are joined here), answers
 * server pings (lws does), sends its own pings when the line goes quiet and
 * hangs up when nothing valid arrived for too long. Reconnecting and
 * resubscribing are policy and live in Lua (vibex.exchange.streams).
 *
 * Not thread-safe, like lws itself: everything runs on the loop thread.
 */
#ifndef VX_WS_H
#define VX_WS_H

#include <stddef.h>

#include "vx.h"

typedef struct vx_ws vx_ws;
typedef struct vx_ws_conn vx_ws_conn;

typedef struct vx_ws_opts {
    const char *url;            /* ws://host[:port]/path or wss://… */
    const char *const *headers; /* "Name: value" strings, NULL-terminated */
    unsigned ping_s;            /* ping after this long without traffic; 0 = 30 */
    unsigned hangup_s;          /* close after this long without valid traffic; 0 = ping_s + 30 */
    int insecure;               /* accept any TLS certificate (tests only) */
    size_t max_message;         /* larger messages close the connection; 0 = 16 MiB */
} vx_ws_opts;

typedef struct vx_ws_events {
    void (*open)(vx_ws_conn *c, void *ud);
    void (*message)(vx_ws_conn *c, const char *p, size_t n, int binary, void *ud);
    /* Called exactly once, after open or instead of it (failed connect);
     * code is the peer's close code, 1006 when the line just dropped. The
     * connection is freed after this returns. */
    void (*closed)(vx_ws_conn *c, int code, const char *reason, void *ud);
} vx_ws_events;

vx_ws *vx_ws_new(vx_runtime *rt, char *err, size_t errlen);
/* Destroy in two halves: lws on a foreign libuv loop closes its handles
 * through the loop, so the loop must turn between begin and end. */
void vx_ws_free_begin(vx_ws *ws);
void vx_ws_free_end(vx_ws *ws);

/* Start connecting. Returns NULL with err filled on bad options. */
vx_ws_conn *vx_ws_connect(vx_ws *ws, const vx_ws_opts *o, const vx_ws_events *ev, void *ud,
                          char *err, size_t errlen);
/* Queue a message; returns 0, or -1 when the connection is not open. */
int vx_ws_send(vx_ws_conn *c, const char *p, size_t n, int binary);
/* Close with a code; no callback runs after this call (not even closed). */
void vx_ws_close(vx_ws_conn *c, int code, const char *reason);
/* Stop (0) or resume (1) reading from the socket: backpressure. */
void vx_ws_read_enable(vx_ws_conn *c, int enable);
/* Bytes queued for sending. */
size_t vx_ws_pending(const vx_ws_conn *c);
size_t vx_ws_open_count(const vx_ws *ws);

#endif
