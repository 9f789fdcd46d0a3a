/*
 * task.h — Lua coroutines scheduled by C on the libuv loop.
 *
 * A task is a coroutine plus the bookkeeping to suspend it on a waiting call
 * and resume it when the loop has the result. The protocol for a C primitive
 * that waits (sleep, an HTTP request, a query, …):
 *
 *     vx_task *t = vx_task_prepare_wait(L, "http.request");  // raises if not in a task,
 *                                                            // cancelled or past a deadline
 *     start the operation, remembering t;
 *     return vx_task_wait(L, t, VX_WAIT_IO, cancel_fn, op);  // yields
 *
 * and when the operation completes:
 *
 *     lua_State *co = vx_task_wake_begin(t);   // push the results onto co
 *     vx_task_wake_end(t, nresults);           // the task runs on this loop turn
 *
 * If the task is cancelled or its deadline passes first, cancel_fn(t, op) is
 * called: the operation must forget t (it will never be woken) and release
 * what it holds. The task is then resumed with (INTERRUPT, error) which the
 * Lua wrapper of every waiting call turns into an error raised at the call
 * site, so the task unwinds through its own code and pcalls.
 */
#ifndef VX_TASK_H
#define VX_TASK_H

#include <lua.h>
#include <stdint.h>

#include "vx.h"

typedef struct vx_task vx_task;

typedef enum {
    VX_WAIT_SOFT = 0, /* sleeps, joins: interrupted as soon as shutdown starts */
    VX_WAIT_IO = 1,   /* calls in flight: allowed to finish within the grace period */
} vx_wait_kind;

typedef void (*vx_wait_cancel_fn)(vx_task *t, void *op);

vx_sched *vx_sched_new(vx_runtime *rt);
/* Register the task metatable and sentinels in rt->L. */
int vx_sched_open(vx_sched *s, lua_State *L);
void vx_sched_free(vx_sched *s);

/* Spawn a task running the function at stack index -(nargs+1) with the nargs
 * values above it (all popped). Pushes the task handle. The task starts on
 * the next loop turn. */
vx_task *vx_task_spawn(vx_sched *s, lua_State *L, int nargs, const char *name);

vx_task *vx_task_current(vx_sched *s, lua_State *L);
/* Stop the collector until the running task next waits (or ends): a short,
 * latency-critical stretch runs with no collector step. Returns 1 when held,
 * 0 outside a task or when the collector was already stopped by others. */
int vx_task_hold_gc(vx_sched *s, lua_State *L);
/* End the running task's hold early (a no-op when it holds none). */
void vx_task_release_gc(vx_sched *s, lua_State *L);
vx_task *vx_task_prepare_wait(lua_State *L, const char *what);
int vx_task_wait(lua_State *L, vx_task *t, vx_wait_kind kind, vx_wait_cancel_fn cancel, void *op);
lua_State *vx_task_wake_begin(vx_task *t);
void vx_task_wake_end(vx_task *t, int nresults);

/* Cancel a task: a waiting task is interrupted, a ready one unwinds when it
 * next runs. Returns 0 if it was already done. */
int vx_task_cancel(vx_task *t);

/* At shutdown: interrupt every task in a soft wait. With all=1 cancel all. */
void vx_sched_cancel_waiting(vx_sched *s, int all);

uint64_t vx_task_id(const vx_task *t);
/* "ready", "running", "waiting", "done", "failed" or "cancelled". */
const char *vx_task_status(const vx_task *t);
const char *vx_task_name(const vx_task *t);
size_t vx_sched_alive(const vx_sched *s);
uint64_t vx_sched_running_task(const vx_sched *s);

/* The sched of a Lua state (kept in the state's registry under "vibex.sched"). */
vx_sched *vx_sched_from_lua(lua_State *L);

#endif
