/*
 * runtime.c — creating, running and tearing down a vx_runtime.
 *
 * Owns the pieces every primitive shares: the loop, the Lua state (with the
 * stdlib on package.path and the C modules preloaded as vibex.core.*), the
 * logger and its flush timer, the metrics registry, the scheduler, signal
 * handling and graceful shutdown, and the stall watchdog.
 *
 * Shutdown (first SIGINT/SIGTERM, or runtime.shutdown()): the Lua shutdown
 * hooks run (services stop accepting work), tasks in soft waits (sleeps,
 * joins) are cancelled, calls in flight get grace_ms to finish; then every
 * task left is cancelled. A second signal cancels everything at once. The
 * process exits 0 unless something set another exit code.
 */

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "http.h"
#include "ws.h"
#include "server.h"
#include "log.h"
#include "metrics.h"
#include "task.h"
#include "vx_lua.h"

#define FLUSH_INTERVAL_MS 100
#define DEFAULT_GRACE_MS 10000
#define DEFAULT_STALL_WARN_MS 1000

int64_t vx_wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- stall watchdog ----------------------------------------------------- */

static void mark_idle(uv_prepare_t *h) {
    vx_runtime *rt = h->data;
    __atomic_store_n(&rt->busy_since_ns, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&rt->in_poll, 1, __ATOMIC_RELAXED);
}

static void mark_busy(uv_check_t *h) {
    vx_runtime *rt = h->data;
    __atomic_store_n(&rt->busy_since_ns, uv_hrtime(), __ATOMIC_RELAXED);
    __atomic_store_n(&rt->in_poll, 0, __ATOMIC_RELAXED);
}

/* A stop signal the loop cannot take because it is blocked (native code,
 * Lua outside a budget; a budgeted call is ended by its hook): after
 * SIGTERM, or a second SIGINT (the first may be the REPL's), give it
 * HARD_STOP_NS, then exit at once. */
#define HARD_STOP_NS (800ull * 1000 * 1000)

typedef struct stop_watch {
    uint64_t signals;     /* count last seen */
    uint64_t busy_since;  /* the busy period the signals arrived in */
    uint64_t first_at;    /* when the first of them was seen */
    int pending;          /* signals seen in that busy period */
} stop_watch;

static void check_stuck_stop(stop_watch *w, uint64_t since, int in_poll) {
    uint64_t sigs = vx_budget_signal_count();
    /* in poll, or the loop turned since: it takes signals itself. Before the
     * loop first runs (a script's main chunk) `since` is 0 and not in poll. */
    if (in_poll || since != w->busy_since) {
        w->busy_since = since;
        w->pending = 0;
        w->signals = sigs;
        return;
    }
    if (sigs != w->signals) {
        if (!w->pending) w->first_at = uv_hrtime();
        w->pending += (int)(sigs - w->signals);
        w->signals = sigs;
    }
    int sig = vx_budget_last_signal();
    if (!w->pending || (sig != SIGTERM && w->pending < 2)) return;
    if (uv_hrtime() - w->first_at < HARD_STOP_NS) return;
    char line[200];
    int n = snprintf(line, sizeof line,
                     "vibex: %s arrived while the loop was blocked and it did not return "
                     "within %.1f s; exiting now without an orderly shutdown\n",
                     sig == SIGTERM ? "SIGTERM" : "SIGINT", (double)HARD_STOP_NS / 1e9);
    if (n > 0 && write(2, line, (size_t)n) < 0) { /* exiting anyway */
    }
    _exit(128 + sig);
}

/* A separate thread, so a task spinning in a loop is reported while it
 * spins, a budgeted call over its time is ended, and a stop signal is
 * honoured while the loop is blocked. It reads atomics, arms the budget
 * hook under the budget's mutex, and writes to stderr. */
static void watchdog_main(void *arg) {
    vx_runtime *rt = arg;
    uint64_t reported = 0;
    stop_watch stop = {0};
    int budget_active = 0;
    uv_mutex_lock(&rt->watchdog_mu);
    while (!rt->watchdog_stop) {
        /* a script under a budget is looked at every 10 ms: its deadline is that precise */
        uint64_t wait_ns = budget_active ? 10u * 1000 * 1000 : 100u * 1000 * 1000;
        uv_cond_timedwait(&rt->watchdog_cv, &rt->watchdog_mu, wait_ns);
        budget_active = vx_budget_poll(&rt->budget);
        uint64_t since = __atomic_load_n(&rt->busy_since_ns, __ATOMIC_RELAXED);
        check_stuck_stop(&stop, since, __atomic_load_n(&rt->in_poll, __ATOMIC_RELAXED));
        uint64_t limit = rt->stall_warn_ms * 1000000ull;
        if (!since || !limit || since == reported) continue;
        uint64_t blocked = uv_hrtime() - since;
        if (blocked < limit) continue;
        reported = since;
        uint64_t task = __atomic_load_n(&rt->running_task_id, __ATOMIC_RELAXED);
        char line[200];
        int n = snprintf(line, sizeof line,
                         "vibex: the loop has been blocked for %.1f s by task %" PRIu64
                         " (it has not yielded); timers and I/O are waiting\n",
                         (double)blocked / 1e9, task);
        if (n > 0 && write(2, line, (size_t)n) < 0) { /* nothing better to do */
        }
    }
    uv_mutex_unlock(&rt->watchdog_mu);
}

static void start_watchdog(vx_runtime *rt) {
    if (uv_mutex_init(&rt->watchdog_mu) != 0) return;
    if (uv_cond_init(&rt->watchdog_cv) != 0) {
        uv_mutex_destroy(&rt->watchdog_mu);
        return;
    }
    if (uv_thread_create(&rt->watchdog, watchdog_main, rt) != 0) {
        uv_cond_destroy(&rt->watchdog_cv);
        uv_mutex_destroy(&rt->watchdog_mu);
        return;
    }
    rt->watchdog_running = 1;
}

static void stop_watchdog(vx_runtime *rt) {
    if (!rt->watchdog_running) return;
    uv_mutex_lock(&rt->watchdog_mu);
    rt->watchdog_stop = 1;
    uv_cond_signal(&rt->watchdog_cv);
    uv_mutex_unlock(&rt->watchdog_mu);
    uv_thread_join(&rt->watchdog);
    uv_cond_destroy(&rt->watchdog_cv);
    uv_mutex_destroy(&rt->watchdog_mu);
    rt->watchdog_running = 0;
}

/* ---- shutdown ----------------------------------------------------------- */

static void spawn_hooks(vx_runtime *rt, const char *field, const char *why) {
    lua_State *L = rt->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->hooks_ref);
    lua_getfield(L, -1, field);
    if (lua_istable(L, -1)) {
        int n = (int)lua_objlen(L, -1);
        for (int i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            lua_pushstring(L, why);
            vx_task_spawn(rt->sched, L, 1, field);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 2);
}

static void force_stop(uv_timer_t *t) {
    vx_runtime *rt = t->data;
    vx_logf(rt->log, VX_WARN, VX_CH_APP, "shutdown: handles still open after the grace period; stopping the loop");
    uv_stop(&rt->loop);
}

static void grace_over(uv_timer_t *t) {
    vx_runtime *rt = t->data;
    size_t left = vx_sched_alive(rt->sched);
    if (left)
        vx_logf(rt->log, VX_WARN, VX_CH_APP,
                "shutdown: grace period of %" PRIu64 " ms over, cancelling %zu task(s)", rt->grace_ms,
                left);
    vx_sched_cancel_waiting(rt->sched, 1);
    uv_timer_start(t, force_stop, 2000, 0);
}

void vx_runtime_shutdown(vx_runtime *rt, const char *why) {
    if (rt->shutting_down) return;
    rt->shutting_down = 1;
    vx_logf(rt->log, VX_INFO, VX_CH_APP,
            "shutting down (%s): in-flight calls have %" PRIu64 " ms to finish", why, rt->grace_ms);
    spawn_hooks(rt, "shutdown", why);
    vx_sched_cancel_waiting(rt->sched, 0);
    uv_timer_start(&rt->grace_timer, grace_over, rt->grace_ms, 0);
}

static void on_signal(uv_signal_t *h, int signum) {
    vx_runtime *rt = h->data;
    const char *name = signum == SIGINT ? "SIGINT" : "SIGTERM";
    rt->signals_seen++;
    lua_State *L = rt->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->hooks_ref);
    lua_getfield(L, -1, "sigint");
    int has_override = signum == SIGINT && lua_istable(L, -1) && lua_objlen(L, -1) > 0 &&
                       !rt->shutting_down;
    lua_pop(L, 2);
    if (has_override) { /* the REPL: Ctrl-C cancels the running input */
        spawn_hooks(rt, "sigint", name);
        return;
    }
    if (!rt->shutting_down) {
        vx_runtime_shutdown(rt, name);
        return;
    }
    vx_logf(rt->log, VX_WARN, VX_CH_APP, "second %s: cancelling every task now", name);
    vx_sched_cancel_waiting(rt->sched, 1);
    uv_timer_start(&rt->grace_timer, force_stop, 1000, 0);
}

/* ---- Lua state ---------------------------------------------------------- */

static void set_package_path(lua_State *L, const char *home) {
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/stdlib/?.lua;%s/stdlib/?/init.lua;%s", home, home, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 1);
    lua_getfield(L, -1, "cpath");
    lua_pushfstring(L, "%s;/usr/lib/x86_64-linux-gnu/lua/5.1/?.so", lua_tostring(L, -1));
    lua_setfield(L, -3, "cpath");
    lua_pop(L, 2);
}

static void preload(lua_State *L, const char *name, lua_CFunction open) {
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, open);
    lua_setfield(L, -2, name);
    lua_pop(L, 2);
}

static int setup_lua(vx_runtime *rt) {
    lua_State *L = luaL_newstate();
    if (!L) return -1;
    rt->L = L;
    if (vx_budget_install(&rt->budget, L) != 0) return -1;
    luaL_openlibs(L);
    lua_pushlightuserdata(L, rt);
    lua_setfield(L, LUA_REGISTRYINDEX, "vibex.rt");
    vx_sched_open(rt->sched, L);
    lua_newtable(L);
    rt->hooks_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    set_package_path(L, rt->home);
    preload(L, "vibex.core.task", vx_open_task);
    preload(L, "vibex.core.http", vx_open_http);
    preload(L, "vibex.core.ws", vx_open_ws);
    preload(L, "vibex.core.server", vx_open_server);
    preload(L, "vibex.core.mdsink", vx_open_mdsink);
    preload(L, "vibex.core.fdwait", vx_open_fdwait);
    preload(L, "vibex.core.log", vx_open_log);
    preload(L, "vibex.core.metrics", vx_open_metrics);
    preload(L, "vibex.core.fswatch", vx_open_fswatch);
    preload(L, "vibex.core.process", vx_open_process);
    preload(L, "vibex.core.runtime", vx_open_runtime);
    preload(L, "vibex.core.repl", vx_open_repl);
    preload(L, "vibex.core.crypto", vx_open_crypto);
    preload(L, "vibex.core.eth", vx_open_eth);
    preload(L, "vibex.core.budget", vx_open_budget);
    return 0;
}

static void flush_logs(uv_timer_t *t) {
    vx_runtime *rt = t->data;
    vx_log_flush(rt->log);
}

vx_runtime *vx_runtime_new(const char *home, char *err, size_t errlen) {
    vx_runtime *rt = calloc(1, sizeof *rt);
    if (!rt) goto oom;
    if (uv_loop_init(&rt->loop) != 0) {
        snprintf(err, errlen, "cannot initialise the event loop");
        free(rt);
        return NULL;
    }
    rt->grace_ms = DEFAULT_GRACE_MS;
    rt->stall_warn_ms = DEFAULT_STALL_WARN_MS;
    rt->home = strdup(home);
    rt->log = vx_log_new();
    rt->metrics = vx_metrics_new();
    if (!rt->home || !rt->log || !rt->metrics) goto oom;
    rt->sched = vx_sched_new(rt);
    if (!rt->sched || setup_lua(rt) != 0) goto oom;
    uv_signal_init(&rt->loop, &rt->sigint);
    uv_signal_init(&rt->loop, &rt->sigterm);
    rt->sigint.data = rt->sigterm.data = rt;
    uv_signal_start(&rt->sigint, on_signal, SIGINT);
    uv_signal_start(&rt->sigterm, on_signal, SIGTERM);
    vx_budget_watch_signals(); /* counts them for the budget hook, then libuv's handler runs */
    uv_unref((uv_handle_t *)&rt->sigint);
    uv_unref((uv_handle_t *)&rt->sigterm);
    uv_timer_init(&rt->loop, &rt->grace_timer);
    rt->grace_timer.data = rt;
    uv_unref((uv_handle_t *)&rt->grace_timer);
    uv_timer_init(&rt->loop, &rt->flush_timer);
    rt->flush_timer.data = rt;
    uv_timer_start(&rt->flush_timer, flush_logs, FLUSH_INTERVAL_MS, FLUSH_INTERVAL_MS);
    uv_unref((uv_handle_t *)&rt->flush_timer);
    uv_prepare_init(&rt->loop, &rt->idle_mark);
    uv_check_init(&rt->loop, &rt->busy_mark);
    rt->idle_mark.data = rt->busy_mark.data = rt;
    uv_prepare_start(&rt->idle_mark, mark_idle);
    uv_check_start(&rt->busy_mark, mark_busy);
    uv_unref((uv_handle_t *)&rt->idle_mark);
    uv_unref((uv_handle_t *)&rt->busy_mark);
    start_watchdog(rt);
    return rt;
oom:
    snprintf(err, errlen, "out of memory while creating the runtime");
    if (rt) vx_runtime_free(rt);
    return NULL;
}

int vx_runtime_run(vx_runtime *rt) {
    uv_run(&rt->loop, UV_RUN_DEFAULT);
    vx_log_flush(rt->log);
    return rt->exit_code;
}

static void close_walk(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

void vx_runtime_free(vx_runtime *rt) {
    if (!rt) return;
    stop_watchdog(rt);
    if (rt->sched) vx_sched_free(rt->sched);
    if (rt->http) vx_http_free(rt->http);
    if (rt->L) lua_close(rt->L); /* __gc of handles closes their libuv side */
    rt->L = NULL;
    vx_budget_uninstall(&rt->budget);
    vx_server_reap_all(rt);
    if (rt->ws) { /* lws closes its handles through the loop: let it turn in between */
        vx_ws_free_begin(rt->ws);
        for (int i = 0; i < 8; i++) uv_run(&rt->loop, UV_RUN_NOWAIT);
        vx_ws_free_end(rt->ws);
        rt->ws = NULL;
    }
    /* anything still open belongs to us (signals, timers, marks) */
    uv_walk(&rt->loop, close_walk, NULL);
    uv_run(&rt->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&rt->loop) != 0) fprintf(stderr, "vibex: event loop closed with handles still open\n");
    free(rt->sched);
    vx_log_free(rt->log);
    vx_metrics_free(rt->metrics);
    free(rt->home);
    free(rt);
}
