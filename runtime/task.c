/*
 * task.c — the scheduler: a ready queue of coroutines drained on every loop
 * turn, suspension on waiting calls, deadlines, cancellation and joins.
 *
 * Design:
 * - A task is a full userdata (struct vx_task) whose environment table holds
 *   its coroutine. While it is not done it is anchored in the registry, so a
 *   C operation holding a vx_task* can never see it collected; once done, the
 *   handle lives as long as Lua code keeps it (results stay on its stack for
 *   late joiners).
 * - Woken tasks are queued, not resumed from inside the I/O callback that
 *   woke them: the callback finishes its own bookkeeping first, and a task
 *   that cancels another cannot pull a handle out from under a callback. The
 *   queue is drained in a uv_check handle (right after I/O, same loop turn)
 *   and in a uv_idle handle that is active only while the queue is not empty
 *   (it keeps the loop from blocking in poll).
 * - Interrupts (cancel, deadline) are delivered by resuming the coroutine
 *   with (INTERRUPT, err); the Lua wrapper of each waiting call raises err.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "log.h"
#include "task_impl.h"

static void run_ready(vx_sched *s);

static void idle_cb(uv_idle_t *h) { run_ready(h->data); }
static void check_cb(uv_check_t *h) { run_ready(h->data); }

vx_sched *vx_sched_new(vx_runtime *rt) {
    vx_sched *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->rt = rt;
    s->next_id = 1;
    s->mt_ref = s->interrupt_ref = s->cancelled_ref = s->timeout_mt_ref = LUA_NOREF;
    uv_idle_init(&rt->loop, &s->idle);
    uv_check_init(&rt->loop, &s->check);
    s->idle.data = s->check.data = s;
    uv_check_start(&s->check, check_cb);
    uv_unref((uv_handle_t *)&s->check);
    char err[128];
    vx_family *f;
    f = vx_metrics_family(rt->metrics, "vibex_tasks_spawned_total", "Tasks spawned", VX_COUNTER,
                          0, NULL, NULL, 0, err, sizeof err);
    s->m_spawned = f ? vx_family_series(f, NULL) : NULL;
    f = vx_metrics_family(rt->metrics, "vibex_task_errors_total",
                          "Tasks that ended with an error", VX_COUNTER, 0, NULL, NULL, 0, err,
                          sizeof err);
    s->m_errors = f ? vx_family_series(f, NULL) : NULL;
    f = vx_metrics_family(rt->metrics, "vibex_tasks_alive", "Tasks not yet finished", VX_GAUGE, 0,
                          NULL, NULL, 0, err, sizeof err);
    s->m_alive = f ? vx_family_series(f, NULL) : NULL;
    f = vx_metrics_family(rt->metrics, "vibex_loop_stalls_total",
                          "Times a task ran longer than the stall limit without yielding",
                          VX_COUNTER, 0, NULL, NULL, 0, err, sizeof err);
    s->m_stalls = f ? vx_family_series(f, NULL) : NULL;
    f = vx_metrics_family(rt->metrics, "vibex_task_resumes_total", "Coroutine resumes",
                          VX_COUNTER, 0, NULL, NULL, 0, err, sizeof err);
    s->m_resumes = f ? vx_family_series(f, NULL) : NULL;
    if (!s->m_spawned || !s->m_errors || !s->m_alive || !s->m_stalls || !s->m_resumes) {
        vx_sched_free(s);
        return NULL;
    }
    return s;
}

static void free_handle_cb(uv_handle_t *h) { free(h); }

static void close_deadline_timer(vx_task *t) {
    if (!t->deadline_timer) return;
    uv_close((uv_handle_t *)t->deadline_timer, free_handle_cb);
    t->deadline_timer = NULL;
}

static void clear_wait(vx_task *t) {
    t->wait_cancel = NULL;
    t->wait_op = NULL;
    if (t->deadline_timer) uv_timer_stop(t->deadline_timer);
}

void vx_sched_free(vx_sched *s) {
    if (!s) return;
    /* Release what still-waiting tasks hold; their coroutines go with the
     * Lua state. */
    for (vx_task *t = s->alive_head; t; t = t->next_alive) {
        if (t->state == T_WAITING && t->wait_cancel) t->wait_cancel(t, t->wait_op);
        clear_wait(t);
        close_deadline_timer(t);
        free(t->joiners);
        t->joiners = NULL;
    }
    uv_close((uv_handle_t *)&s->idle, NULL);
    uv_close((uv_handle_t *)&s->check, NULL);
    /* the struct is freed by the runtime after the loop has run the closes */
}

uint64_t vx_task_id(const vx_task *t) { return t->id; }
const char *vx_task_name(const vx_task *t) { return t->name; }
size_t vx_sched_alive(const vx_sched *s) { return s->nalive; }
uint64_t vx_sched_running_task(const vx_sched *s) { return s->current ? s->current->id : 0; }

vx_sched *vx_sched_from_lua(lua_State *L) {
    lua_getfield(L, LUA_REGISTRYINDEX, "vibex.sched");
    vx_sched *s = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return s;
}

/* ---- queue and lifecycle ------------------------------------------------ */

void vx_task_enqueue(vx_task *t) {
    vx_sched *s = t->sched;
    t->state = T_READY;
    t->next_ready = NULL;
    if (s->ready_tail) s->ready_tail->next_ready = t;
    else s->ready_head = t;
    s->ready_tail = t;
    if (!s->idle_active) {
        uv_idle_start(&s->idle, idle_cb);
        s->idle_active = 1;
    }
}

static void link_alive(vx_sched *s, vx_task *t) {
    t->next_alive = s->alive_head;
    if (s->alive_head) s->alive_head->prev_alive = t;
    s->alive_head = t;
    s->nalive++;
    vx_series_set(s->m_alive, (double)s->nalive);
}

static void unlink_alive(vx_sched *s, vx_task *t) {
    if (t->prev_alive) t->prev_alive->next_alive = t->next_alive;
    else s->alive_head = t->next_alive;
    if (t->next_alive) t->next_alive->prev_alive = t->prev_alive;
    t->prev_alive = t->next_alive = NULL;
    s->nalive--;
    vx_series_set(s->m_alive, (double)s->nalive);
}

vx_task *vx_task_spawn(vx_sched *s, lua_State *L, int nargs, const char *name) {
    vx_task *t = lua_newuserdata(L, sizeof *t);
    memset(t, 0, sizeof *t);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->mt_ref);
    lua_setmetatable(L, -2);
    lua_State *co = lua_newthread(L);
    lua_createtable(L, 1, 0);
    lua_insert(L, -2);
    lua_rawseti(L, -2, 1);
    lua_setfenv(L, -2); /* the task's env table holds its coroutine */
    lua_insert(L, -(nargs + 2));
    lua_xmove(L, co, nargs + 1);
    lua_pushvalue(L, -1);
    t->anchor_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    t->sched = s;
    t->co = co;
    t->id = s->next_id++;
    t->nresume = nargs;
    snprintf(t->name, sizeof t->name, "%s", name && *name ? name : "task");
    link_alive(s, t);
    vx_series_add(s->m_spawned, 1);
    vx_task_enqueue(t);
    return t;
}

/* Copy a finished task's outcome onto another stack: (true, results…) or
 * (false, message) with with_status, else just the results. */
void vx_task_push_results(vx_task *t, lua_State *to, int with_status) {
    lua_State *co = t->co;
    int n = lua_gettop(co);
    lua_checkstack(to, n + 2);
    lua_checkstack(co, n + 1);
    if (with_status) lua_pushboolean(to, t->outcome == OUT_OK);
    for (int i = 1; i <= n; i++) lua_pushvalue(co, i);
    lua_xmove(co, to, n);
}

static void wake_joiners(vx_task *t) {
    for (int i = 0; i < t->njoiners; i++) {
        vx_task *j = t->joiners[i];
        lua_State *co = vx_task_wake_begin(j);
        int before = lua_gettop(co);
        vx_task_push_results(t, co, 1);
        vx_task_wake_end(j, lua_gettop(co) - before);
    }
    free(t->joiners);
    t->joiners = NULL;
    t->njoiners = t->capjoiners = 0;
}

/* Turn the error on top of co into a message with a traceback, log it, and
 * leave just the message on co for joiners. */
static void report_error(vx_sched *s, vx_task *t) {
    lua_State *L = s->L, *co = t->co;
    int base = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->cancelled_ref);
    lua_xmove(co, L, 1);
    if (lua_rawequal(L, -1, -2)) {
        lua_settop(L, base);
        t->outcome = OUT_CANCELLED;
        lua_settop(co, 0);
        lua_pushliteral(co, "task cancelled");
        return;
    }
    const char *msg = lua_tostring(L, -1);
    if (!msg && luaL_callmeta(L, -1, "__tostring") && lua_isstring(L, -1)) {
        lua_replace(L, -2);
        msg = lua_tostring(L, -1);
    }
    if (!msg) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, -1));
    luaL_traceback(L, co, msg, 0);
    const char *tb = lua_tostring(L, -1);
    vx_field fields[3] = {
        {.key = "task_id", .type = VX_F_INT, .i = (int64_t)t->id},
        {.key = "task", .type = VX_F_STR, .s = t->name, .slen = strlen(t->name)},
        {.key = "traceback", .type = VX_F_STR, .s = tb, .slen = strlen(tb)},
    };
    char line[1024];
    snprintf(line, sizeof line, "task %" PRIu64 " (%s) failed: %s", t->id, t->name, msg);
    vx_log_write(s->rt->log, VX_ERROR, VX_CH_APP, line, fields, 3);
    vx_series_add(s->m_errors, 1);
    t->outcome = OUT_ERROR;
    lua_settop(co, 0);
    lua_pushstring(co, msg);
    lua_settop(L, base);
}

static void finish(vx_sched *s, vx_task *t, int rc) {
    t->state = T_DONE;
    if (rc == 0) {
        t->outcome = OUT_OK;
    } else if (rc == -1) { /* cancelled before it ever ran */
        t->outcome = OUT_CANCELLED;
        lua_settop(t->co, 0);
        lua_pushliteral(t->co, "task cancelled");
    } else {
        report_error(s, t);
    }
    wake_joiners(t);
    close_deadline_timer(t);
    unlink_alive(s, t);
    luaL_unref(s->L, LUA_REGISTRYINDEX, t->anchor_ref);
    t->anchor_ref = LUA_NOREF;
}

static void note_stall(vx_sched *s, vx_task *t, uint64_t ns) {
    uint64_t ms = ns / 1000000;
    if (!s->rt->stall_warn_ms || ms < s->rt->stall_warn_ms) return;
    vx_series_add(s->m_stalls, 1);
    vx_logf(s->rt->log, VX_WARN, VX_CH_APP,
            "task %" PRIu64 " (%s) ran for %" PRIu64
            " ms without yielding; timers and I/O waited meanwhile",
            t->id, t->name, ms);
}

/* task.hold_gc ends when its task yields, errors or returns: the collector
 * is never left stopped while other tasks run. */
static void release_gc(vx_sched *s) {
    s->gc_held_by = NULL;
    lua_gc(s->L, LUA_GCRESTART, 0);
}

int vx_task_hold_gc(vx_sched *s, lua_State *L) {
    vx_task *t = vx_task_current(s, L);
    if (!t) return 0;
    if (s->gc_held_by == t) return 1;
    if (s->gc_held_by || !lua_gc(L, LUA_GCISRUNNING, 0)) return 0; /* someone else stopped it */
    lua_gc(L, LUA_GCSTOP, 0);
    s->gc_held_by = t;
    return 1;
}

void vx_task_release_gc(vx_sched *s, lua_State *L) {
    vx_task *t = vx_task_current(s, L);
    if (t && s->gc_held_by == t) release_gc(s);
}

static void run_task(vx_sched *s, vx_task *t) {
    if (t->state != T_READY) return;
    if (t->cancel_requested) {
        if (!t->started) {
            finish(s, t, -1);
            return;
        }
        lua_pop(t->co, t->nresume);
        t->nresume = vx_task_push_interrupt(t, 0);
    }
    t->started = 1;
    t->state = T_RUNNING;
    vx_task *prev = s->current;
    s->current = t;
    int n = t->nresume;
    t->nresume = 0;
    uint64_t t0 = uv_hrtime();
    __atomic_store_n(&s->rt->running_task_id, t->id, __ATOMIC_RELAXED);
    int rc = lua_resume(t->co, n);
    if (s->gc_held_by == t) release_gc(s);
    __atomic_store_n(&s->rt->running_task_id, prev ? prev->id : 0, __ATOMIC_RELAXED);
    uint64_t dt = uv_hrtime() - t0;
    s->current = prev;
    t->run_ns += dt;
    vx_series_add(s->m_resumes, 1);
    if (dt > 50000000ull) note_stall(s, t, dt);
    if (rc == LUA_YIELD) {
        if (t->state == T_RUNNING) { /* a plain yield: run again next turn */
            lua_settop(t->co, 0);
            vx_task_enqueue(t);
        }
        return;
    }
    finish(s, t, rc);
}

static void run_ready(vx_sched *s) {
    /* Run the tasks queued before this call; tasks they wake run next turn,
     * so a task that keeps yielding cannot starve timers and I/O. */
    vx_task *t = s->ready_head;
    s->ready_head = s->ready_tail = NULL;
    while (t) {
        vx_task *next = t->next_ready;
        t->next_ready = NULL;
        run_task(s, t);
        t = next;
    }
    if (!s->ready_head && s->idle_active) {
        uv_idle_stop(&s->idle);
        s->idle_active = 0;
    }
}

/* ---- waiting ------------------------------------------------------------ */

vx_task *vx_task_current(vx_sched *s, lua_State *L) {
    vx_task *t = s->current;
    return t && t->co == L ? t : NULL;
}

static int expired_level(vx_task *t, uint64_t now) {
    for (int i = 0; i < t->ndeadlines; i++)
        if (t->deadlines[i] <= now) return i + 1;
    return 0;
}

/* Push (INTERRUPT, err) onto the task's stack; level 0 means cancelled,
 * otherwise the deadline level that expired. Returns 2. */
int vx_task_push_interrupt(vx_task *t, int level) {
    vx_sched *s = t->sched;
    lua_State *co = t->co;
    lua_checkstack(co, 4);
    lua_rawgeti(co, LUA_REGISTRYINDEX, s->interrupt_ref);
    if (level == 0) {
        lua_rawgeti(co, LUA_REGISTRYINDEX, s->cancelled_ref);
        return 2;
    }
    lua_createtable(co, 0, 3);
    lua_pushboolean(co, 1);
    lua_setfield(co, -2, "timeout");
    lua_pushinteger(co, level);
    lua_setfield(co, -2, "level");
    lua_pushnumber(co, (double)t->deadline_ms[level - 1]);
    lua_setfield(co, -2, "ms");
    lua_rawgeti(co, LUA_REGISTRYINDEX, s->timeout_mt_ref);
    lua_setmetatable(co, -2);
    return 2;
}

static void raise_interrupt(lua_State *L, vx_task *t, int level) {
    vx_task_push_interrupt(t, level);
    lua_xmove(t->co, L, 2);
    lua_error(L); /* raises the error object; INTERRUPT below it is dropped */
}

vx_task *vx_task_prepare_wait(lua_State *L, const char *what) {
    vx_sched *s = vx_sched_from_lua(L);
    vx_task *t = s ? vx_task_current(s, L) : NULL;
    if (!t)
        luaL_error(L,
                   "%s: can only wait inside a task (not in a coroutine of your own, a C "
                   "callback, or the top level of a required module)",
                   what);
    if (t->cancel_requested) raise_interrupt(L, t, 0);
    int level = expired_level(t, vx_now_ms(s->rt));
    if (level) raise_interrupt(L, t, level);
    return t;
}

static void deadline_cb(uv_timer_t *timer) {
    vx_task *t = timer->data;
    if (t->state != T_WAITING) return;
    int level = expired_level(t, vx_now_ms(t->sched->rt));
    if (!level) return;
    vx_wait_cancel_fn cancel = t->wait_cancel;
    void *op = t->wait_op;
    clear_wait(t);
    if (cancel) cancel(t, op);
    t->nresume = vx_task_push_interrupt(t, level);
    vx_task_enqueue(t);
}

static void arm_deadline(vx_task *t) {
    if (t->ndeadlines == 0) return;
    uint64_t soonest = UINT64_MAX, now = vx_now_ms(t->sched->rt);
    for (int i = 0; i < t->ndeadlines; i++)
        if (t->deadlines[i] < soonest) soonest = t->deadlines[i];
    if (!t->deadline_timer) {
        t->deadline_timer = malloc(sizeof(uv_timer_t));
        if (!t->deadline_timer) return; /* no deadline rather than no wait */
        uv_timer_init(&t->sched->rt->loop, t->deadline_timer);
        t->deadline_timer->data = t;
    }
    uv_timer_start(t->deadline_timer, deadline_cb, soonest > now ? soonest - now : 0, 0);
}

int vx_task_wait(lua_State *L, vx_task *t, vx_wait_kind kind, vx_wait_cancel_fn cancel, void *op) {
    t->state = T_WAITING;
    t->wait_kind = kind;
    t->wait_cancel = cancel;
    t->wait_op = op;
    arm_deadline(t);
    if (kind == VX_WAIT_SOFT && t->sched->rt->shutting_down && !t->cancel_requested) {
        /* shutdown already began: a new sleep or join ends the task */
        t->cancel_requested = 1;
    }
    if (t->cancel_requested && kind == VX_WAIT_SOFT) {
        /* The interrupt is pushed by run_task when the task resumes: values
         * pushed here, below a yield of 0 results, would not survive it. */
        clear_wait(t);
        if (cancel) cancel(t, op);
        t->nresume = 0;
        vx_task_enqueue(t);
    }
    return lua_yield(L, 0);
}

lua_State *vx_task_wake_begin(vx_task *t) {
    clear_wait(t);
    return t->co;
}

void vx_task_wake_end(vx_task *t, int nresults) {
    t->nresume = nresults;
    vx_task_enqueue(t);
}

int vx_task_cancel(vx_task *t) {
    if (t->state == T_DONE) return 0;
    t->cancel_requested = 1;
    if (t->state != T_WAITING) return 1; /* ready: unwinds when it runs */
    vx_wait_cancel_fn cancel = t->wait_cancel;
    void *op = t->wait_op;
    clear_wait(t);
    if (cancel) cancel(t, op);
    t->nresume = vx_task_push_interrupt(t, 0);
    vx_task_enqueue(t);
    return 1;
}

void vx_sched_cancel_waiting(vx_sched *s, int all) {
    vx_task *t = s->alive_head;
    while (t) {
        vx_task *next = t->next_alive;
        if (all || (t->state == T_WAITING && t->wait_kind == VX_WAIT_SOFT)) vx_task_cancel(t);
        t = next;
    }
}

/* ---- joins -------------------------------------------------------------- */

int vx_task_add_joiner(vx_task *target, vx_task *waiter) {
    if (target->njoiners == target->capjoiners) {
        int cap = target->capjoiners ? target->capjoiners * 2 : 4;
        vx_task **j = realloc(target->joiners, sizeof(vx_task *) * (size_t)cap);
        if (!j) return -1;
        target->joiners = j;
        target->capjoiners = cap;
    }
    target->joiners[target->njoiners++] = waiter;
    return 0;
}

void vx_task_join_cancel(vx_task *waiter, void *op) {
    vx_task *target = op;
    for (int i = 0; i < target->njoiners; i++) {
        if (target->joiners[i] == waiter) {
            target->joiners[i] = target->joiners[--target->njoiners];
            return;
        }
    }
}
