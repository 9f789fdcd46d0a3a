/*
 * http.h — asynchronous HTTP client: libcurl's multi interface driven by the
 * libuv loop (socket and timer callbacks; nothing polls, nothing blocks).
 *
 * Connections are reused across requests (one multi handle per runtime owns
 * the connection cache), HTTP/2 is negotiated over TLS and multiplexed, and
 * any number of requests may be in flight.
 */
#ifndef VX_HTTP_H
#define VX_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "vx.h"

typedef struct vx_http_req vx_http_req;

typedef struct vx_http_opts {
    const char *method;          /* "GET" when NULL */
    const char *url;
    const char *const *headers;  /* "Name: value" strings, NULL-terminated */
    const char *body;
    size_t body_len;
    long timeout_ms;             /* whole transfer; 0 = 30 s */
    long connect_timeout_ms;     /* 0 = 10 s */
    size_t max_body_bytes;       /* 0 = 64 MiB */
    const char *cainfo;          /* CA bundle for TLS, NULL = system */
    int insecure;                /* skip TLS verification (tests only) */
    int http_version;            /* 0 auto (h2 over TLS), 1 = 1.1 only, 2 = h2 prior knowledge */
} vx_http_opts;

typedef struct vx_http_result {
    int ok;              /* 1 when a response arrived (any status) */
    long status;
    int http_version;    /* 1 (1.0/1.1), 2, 3 */
    vx_buf headers;      /* raw header lines of the final response */
    vx_buf body;
    double total_ms;
    uint64_t started_ns;  /* uv_hrtime() when the request was started */
    uint64_t sent_ns;     /* ... and when its bytes went to the socket */
    char error[512];     /* when !ok: what failed, for the user */
    const char *error_kind; /* "timeout", "connect", "dns", "tls", "too_large", "transport" */
} vx_http_result;

typedef void (*vx_http_done_fn)(vx_http_req *req, vx_http_result *res, void *ud);

vx_http *vx_http_new(vx_runtime *rt);
/* Abort everything in flight (callbacks are not called) and free; the
 * memory goes when the loop next runs the handle closes. */
void vx_http_free(vx_http *h);

/* Start a request; done(req, res, ud) is called once from the loop unless the
 * request is cancelled first. Returns NULL with err filled on bad options. */
vx_http_req *vx_http_start(vx_http *h, const vx_http_opts *o, vx_http_done_fn done, void *ud,
                           char *err, size_t errlen);
/* Abort a request in flight; its callback will not be called. */
void vx_http_cancel(vx_http_req *req);

size_t vx_http_in_flight(const vx_http *h);

#endif
