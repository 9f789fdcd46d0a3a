/*
 * vx.h — the runtime object that every primitive hangs off.
 *
 * One vx_runtime owns one libuv loop and one Lua state. Nothing in runtime/
 * keeps global mutable state: a second runtime in the same process (tests do
 * this) gets its own loop, logger, metrics registry and scheduler.
 *
 * The Lua side reaches the runtime through the Lua state's registry (the
 * light userdata under "vibex.rt", read by vx_rt() in vx_lua.h): each Lua
 * state belongs to exactly one runtime, and no C global points at it.
 */
#ifndef VX_H
#define VX_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include <lua.h>

#include "budget.h"

#define VX_VERSION "0.1.0"

typedef struct vx_log vx_log;
typedef struct vx_metrics vx_metrics;
typedef struct vx_sched vx_sched;
typedef struct vx_http vx_http;
typedef struct vx_ws vx_ws;
typedef struct vx_server vx_server;


typedef struct vx_runtime {
    uv_loop_t loop;
    lua_State *L;
    vx_log *log;
    vx_metrics *metrics;
    vx_sched *sched;
    vx_http *http;          /* created on first request */
    vx_ws *ws;              /* WebSocket context, created on first connect */
    vx_server *servers;     /* HTTP servers (vibex.core.server), closed at exit */
    char *home;             /* VIBEX_HOME: where stdlib/ and scripts/ live */
    int exit_code;
    int shutting_down;      /* 1 after the first SIGINT/SIGTERM */
    uint64_t grace_ms;      /* how long in-flight calls may take at shutdown */
    uv_signal_t sigint, sigterm;
    uv_timer_t grace_timer;
    uv_timer_t flush_timer; /* writes buffered log lines */
    uv_prepare_t idle_mark; /* loop about to block in poll: not busy */
    uv_check_t busy_mark;   /* loop back from poll: busy */
    uv_thread_t watchdog;   /* reports a loop blocked by a task, live */
    uv_mutex_t watchdog_mu;
    uv_cond_t watchdog_cv;
    int watchdog_stop;
    int watchdog_running;
    uint64_t busy_since_ns;       /* atomic: 0 while blocked in poll */
    int in_poll;                  /* atomic: 1 while blocked in poll */
    uint64_t running_task_id;     /* atomic: the task being resumed, 0 none */
    uint64_t stall_warn_ms;       /* 0 disables stall warnings */
    int hooks_ref;          /* Lua registry ref: {shutdown = {fn…}, sigint = fn} */
    int signals_seen;
    int grace_started;
    vx_budget budget;       /* time/memory budgets for untrusted Lua; the allocator's userdata */
} vx_runtime;

/* Create a runtime: loop, logger, metrics, scheduler, Lua state with the
 * stdlib on package.path. Returns NULL and fills err on failure. */
vx_runtime *vx_runtime_new(const char *home, char *err, size_t errlen);

/* Run the loop until no referenced work is left. Returns the exit code. */
int vx_runtime_run(vx_runtime *rt);

/* Close everything the runtime owns, in the order that lets libuv and the
 * libraries on it release their handles. */
void vx_runtime_free(vx_runtime *rt);

/* Begin a graceful shutdown (what SIGINT/SIGTERM do). */
void vx_runtime_shutdown(vx_runtime *rt, const char *why);

/* Monotonic milliseconds of the loop (cached per turn, like uv_now). */
static inline uint64_t vx_now_ms(vx_runtime *rt) { return uv_now(&rt->loop); }

/* Wall-clock milliseconds since the epoch. */
int64_t vx_wall_ms(void);

#endif
