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

#endif
