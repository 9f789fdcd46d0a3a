/*
 * lwsctx.h — a libwebsockets context on the runtime's libuv loop (foreign
 * loop, LWS_SERVER_OPTION_LIBUV), shared by the WebSocket client (ws.c) and
 * the HTTP server (server.c).
 */
#ifndef VX_LWSCTX_H
#define VX_LWSCTX_H

#include <libwebsockets.h>

#include "vx.h"

/* lws_create_context on rt's loop. The handles lws adds to the loop (its
 * timers and idles, a server's listening socket) are unreferenced: an idle
 * context never keeps the runtime alive; live connections' handles do.
 * NULL when lws refuses. */
struct lws_context *vx_lws_context_new(vx_runtime *rt, struct lws_context_creation_info *info);

/* Messages waiting to be written to a WebSocket, each with LWS_PRE bytes of
 * headroom in front (lws_write writes its framing there). */
typedef struct vx_lws_msg {
    struct vx_lws_msg *next;
    size_t len;
    int binary;
    unsigned char buf[]; /* LWS_PRE bytes of headroom, then the payload */
} vx_lws_msg;

typedef struct vx_lws_queue {
    vx_lws_msg *head, *tail;
    size_t bytes;
} vx_lws_queue;

/* Append a copy of p; 0, or -1 when out of memory. */
int vx_lws_queue_push(vx_lws_queue *q, const void *p, size_t n, int binary);
/* Write the first message (from a writeable callback): 1 when more wait,
 * 0 when the queue is empty, -1 when the write failed. */
int vx_lws_queue_write(vx_lws_queue *q, struct lws *wsi);
void vx_lws_queue_clear(vx_lws_queue *q);

#endif
