/*
 * breaker.h — circuit breakers: closed → open → half-open → closed.
 *
 * Closed: calls pass; failures are counted in a rolling window of time
 * buckets. When the failures in the window reach the threshold (and the
 * window saw at least min_calls), the breaker opens. Open: calls are refused
 * until the cool-down has passed, then the breaker is half-open and lets at
 * most half_open_max probe calls through at a time; success_threshold
 * successful probes close it, any failed probe opens it again.
 *
 * The hot calls (allow, record) are plain C functions with no Lua API, for
 * LuaJIT FFI. State changes are logged on the app channel and counted.
 */
#ifndef VX_BREAKER_H
#define VX_BREAKER_H

#include <stdint.h>

#include "metrics.h"
#include "vx.h"

#define VX_BREAKER_BUCKETS 10

enum { VX_BREAKER_CLOSED = 0, VX_BREAKER_OPEN = 1, VX_BREAKER_HALF_OPEN = 2 };

typedef struct vx_breaker_opts {
    int failure_threshold;  /* failures in the window that open the breaker (default 5) */
    int min_calls;          /* calls the window must have seen first (default 1) */
    double window_ms;       /* rolling window (default 60 s) */
    double cooldown_ms;     /* how long it stays open (default 30 s) */
    int half_open_max;      /* concurrent probes when half-open (default 1) */
    int success_threshold;  /* successful probes that close it (default 1) */
} vx_breaker_opts;

typedef struct vx_breaker {
    int state;
    vx_breaker_opts o;
    uint32_t fails[VX_BREAKER_BUCKETS];
    uint32_t calls[VX_BREAKER_BUCKETS];
    uint64_t bucket_epoch;  /* index of the newest bucket in bucket_ms units */
    double bucket_ms;
    uint64_t opened_at;
    int probes_in_flight;
    int probe_successes;
    uint64_t rejected;
    vx_runtime *rt;
    vx_series *m_state, *m_rejected, *m_open, *m_close, *m_half;
    char name[64];
} vx_breaker;

vx_breaker *vx_breaker_new(vx_runtime *rt, const char *name, const vx_breaker_opts *o,
                           char *err, int errlen);
void vx_breaker_free(vx_breaker *b);

/* 0: refused; 1: allowed; 2: allowed as a half-open probe. */
int vx_breaker_allow(vx_breaker *b);
/* Record the outcome of an allowed call; probe is what allow returned. */
void vx_breaker_record(vx_breaker *b, int allowed, int ok);
/* Milliseconds until an open breaker lets a probe through (0 if not open). */
double vx_breaker_retry_in(vx_breaker *b);
void vx_breaker_reset(vx_breaker *b);
int vx_breaker_state(const vx_breaker *b);
/* Failures and calls in the current window. */
void vx_breaker_window(vx_breaker *b, uint32_t *fails, uint32_t *calls);

#endif
