/*
 * task_lua.c — the Lua face of the scheduler: require "vibex.core.task".
 *
 * The raw functions here yield with lua_yield and return whatever the waker
 * pushed; stdlib/vibex/task.lua wraps each waiting call with `await`, which
 * raises the error of an interrupt (cancel, timeout) at the call site.
 */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "task_impl.h"
#include "vx_lua.h"

#define TASK_MT "vibex.task"

static vx_task *check_task(lua_State *L, int idx) {
    return luaL_checkudata(L, idx, TASK_MT);
}

/* spawn(fn, ...) or spawn(name, fn, ...) */
static int l_spawn(lua_State *L) {
    vx_sched *s = vx_sched_from_lua(L);
    const char *name = NULL;
    int first = 1;
    if (lua_type(L, 1) == LUA_TSTRING) {
        name = lua_tostring(L, 1);
        first = 2;
    }
    luaL_checktype(L, first, LUA_TFUNCTION);
    char namebuf[48];
    if (name) {
        snprintf(namebuf, sizeof namebuf, "%s", name);
        name = namebuf;
    }
    int nargs = lua_gettop(L) - first;
    if (first == 2) lua_remove(L, 1);
    vx_task_spawn(s, L, nargs, name);
    return 1;
}

typedef struct sleep_op {
    uv_timer_t timer;
    vx_task *task;
} sleep_op;

static void free_sleep(uv_handle_t *h) { free(h); }

static void sleep_done(uv_timer_t *timer) {
    sleep_op *op = timer->data;
    vx_task *t = op->task;
    uv_close((uv_handle_t *)timer, free_sleep);
    vx_task_wake_begin(t);
    vx_task_wake_end(t, 0);
}

static void sleep_cancel(vx_task *t, void *p) {
    (void)t;
    sleep_op *op = p;
    uv_timer_stop(&op->timer);
    uv_close((uv_handle_t *)&op->timer, free_sleep);
}

static int l_sleep(lua_State *L) {
    double ms = luaL_checknumber(L, 1);
    if (!(ms >= 0)) return luaL_error(L, "task.sleep: milliseconds must be >= 0, got %f", ms);
    vx_task *t = vx_task_prepare_wait(L, "task.sleep");
    vx_sched *s = t->sched;
    sleep_op *op = malloc(sizeof *op);
    if (!op) return luaL_error(L, "task.sleep: out of memory");
    uv_timer_init(&s->rt->loop, &op->timer);
    op->timer.data = op;
    op->task = t;
    uv_timer_start(&op->timer, sleep_done, (uint64_t)(ms + 0.5), 0);
    return vx_task_wait(L, t, VX_WAIT_SOFT, sleep_cancel, op);
}

/* park()/unpark(t, ...): the building block of queues and conditions in
 * Lua (a pool's waiters, a channel's readers). A parked task waits until
 * another task unparks it, passing values; cancel and deadlines apply. The
 * tag's address marks the wait as a park, so unpark never wakes a task that
 * waits on something else. */
static const char PARK_TAG = 'p';

static void park_cancel(vx_task *t, void *op) {
    (void)t;
    (void)op;
}

static int l_park(lua_State *L) {
    vx_task *t = vx_task_prepare_wait(L, "task.park");
    return vx_task_wait(L, t, lua_toboolean(L, 1) ? VX_WAIT_IO : VX_WAIT_SOFT, park_cancel, (void *)&PARK_TAG);
}

static int l_unpark(lua_State *L) {
    vx_task *t = check_task(L, 1);
    if (t->state != T_WAITING || t->wait_op != (void *)&PARK_TAG) {
        lua_pushboolean(L, 0);
        return 1;
    }
    int n = lua_gettop(L) - 1;
    lua_State *co = vx_task_wake_begin(t);
    lua_checkstack(co, n + 1);
    for (int i = 2; i <= n + 1; i++) lua_pushvalue(L, i);
    lua_xmove(L, co, n);
    vx_task_wake_end(t, n);
    lua_pushboolean(L, 1);
    return 1;
}

/* Give other ready tasks, timers and I/O a turn. */
static int l_yield(lua_State *L) {
    vx_task *t = vx_task_prepare_wait(L, "task.yield");
    (void)t;
    return lua_yield(L, 0);
}

static int l_hold_gc(lua_State *L) {
    lua_pushboolean(L, vx_task_hold_gc(vx_sched_from_lua(L), L));
    return 1;
}

static int l_release_gc(lua_State *L) {
    vx_task_release_gc(vx_sched_from_lua(L), L);
    return 0;
}

static int l_current(lua_State *L) {
    vx_sched *s = vx_sched_from_lua(L);
    vx_task *t = vx_task_current(s, L);
    if (!t) return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->anchor_ref);
    return 1;
}

static int l_join(lua_State *L) {
    vx_task *target = check_task(L, 1);
    if (target->state == T_DONE) {
        vx_task_push_results(target, L, 1);
        return lua_gettop(L) - 1;
    }
    vx_task *me = vx_task_prepare_wait(L, "task:join");
    if (me == target) return luaL_error(L, "task:join: a task cannot join itself");
    if (vx_task_add_joiner(target, me) != 0) return luaL_error(L, "task:join: out of memory");
    return vx_task_wait(L, me, VX_WAIT_SOFT, vx_task_join_cancel, target);
}

static int l_cancel(lua_State *L) {
    vx_task *t = check_task(L, 1);
    lua_pushboolean(L, vx_task_cancel(t));
    return 1;
}

static const char *status_name(const vx_task *t) {
    static const char *const states[] = {"ready", "running", "waiting", "done"};
    if (t->state != T_DONE) return states[t->state];
    switch (t->outcome) {
    case OUT_ERROR: return "failed";
    case OUT_CANCELLED: return "cancelled";
    default: return "done";
    }
}

const char *vx_task_status(const vx_task *t) { return status_name(t); }

static int l_status(lua_State *L) {
    lua_pushstring(L, status_name(check_task(L, 1)));
    return 1;
}

static int l_id(lua_State *L) {
    lua_pushnumber(L, (double)check_task(L, 1)->id);
    return 1;
}

static int l_name(lua_State *L) {
    vx_task *t = check_task(L, 1);
    if (lua_gettop(L) >= 2) snprintf(t->name, sizeof t->name, "%s", luaL_checkstring(L, 2));
    lua_pushstring(L, t->name);
    return 1;
}

static int l_tostring(lua_State *L) {
    vx_task *t = check_task(L, 1);
    lua_pushfstring(L, "task %d (%s, %s)", (int)t->id, t->name, status_name(t));
    return 1;
}

static int l_list(lua_State *L) {
    vx_sched *s = vx_sched_from_lua(L);
    lua_createtable(L, (int)s->nalive, 0);
    int i = 1;
    for (vx_task *t = s->alive_head; t; t = t->next_alive) {
        lua_createtable(L, 0, 4);
        lua_pushnumber(L, (double)t->id);
        lua_setfield(L, -2, "id");
        lua_pushstring(L, t->name);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, status_name(t));
        lua_setfield(L, -2, "status");
        lua_pushnumber(L, (double)t->run_ns / 1e6);
        lua_setfield(L, -2, "run_ms");
        lua_rawseti(L, -2, i++);
    }
    return 1;
}

/* deadline_push(ms) -> level: waits in this task fail once ms have passed. */
static int l_deadline_push(lua_State *L) {
    double ms = luaL_checknumber(L, 1);
    if (!(ms >= 0)) return luaL_error(L, "task.timeout: milliseconds must be >= 0");
    vx_sched *s = vx_sched_from_lua(L);
    vx_task *t = vx_task_current(s, L);
    if (!t) return luaL_error(L, "task.timeout: can only be used inside a task");
    if (t->ndeadlines == VX_MAX_DEADLINES)
        return luaL_error(L, "task.timeout: more than %d nested timeouts", VX_MAX_DEADLINES);
    t->deadlines[t->ndeadlines] = vx_now_ms(s->rt) + (uint64_t)(ms + 0.5);
    t->deadline_ms[t->ndeadlines] = (uint64_t)(ms + 0.5);
    lua_pushinteger(L, ++t->ndeadlines);
    return 1;
}

static int l_deadline_pop(lua_State *L) {
    int level = (int)luaL_checkinteger(L, 1);
    vx_sched *s = vx_sched_from_lua(L);
    vx_task *t = vx_task_current(s, L);
    if (t && level >= 1 && level <= t->ndeadlines) t->ndeadlines = level - 1;
    return 0;
}

static int l_alive(lua_State *L) {
    lua_pushnumber(L, (double)vx_sched_alive(vx_sched_from_lua(L)));
    return 1;
}

static int l_now(lua_State *L) {
    vx_sched *s = vx_sched_from_lua(L);
    lua_pushnumber(L, (double)vx_now_ms(s->rt));
    return 1;
}

static int l_hrtime(lua_State *L) {
    lua_pushnumber(L, (double)uv_hrtime());
    return 1;
}

static int l_timeout_tostring(lua_State *L) {
    lua_getfield(L, 1, "ms");
    lua_pushfstring(L, "timeout after %d ms", (int)lua_tonumber(L, -1));
    return 1;
}

static int l_cancelled_tostring(lua_State *L) {
    lua_pushliteral(L, "task cancelled");
    return 1;
}

static int make_ref_table(lua_State *L, lua_CFunction tostring) {
    lua_newtable(L);
    if (tostring) {
        lua_newtable(L);
        lua_pushcfunction(L, tostring);
        lua_setfield(L, -2, "__tostring");
        lua_setmetatable(L, -2);
    }
    lua_pushvalue(L, -1);
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

int vx_sched_open(vx_sched *s, lua_State *L) {
    s->L = L;
    lua_pushlightuserdata(L, s);
    lua_setfield(L, LUA_REGISTRYINDEX, "vibex.sched");
    static const luaL_Reg methods[] = {{"join", l_join},     {"cancel", l_cancel},
                                       {"status", l_status}, {"id", l_id},
                                       {"name", l_name},     {NULL, NULL}};
    luaL_newmetatable(L, TASK_MT);
    lua_newtable(L);
    luaL_register(L, NULL, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
    s->mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    s->interrupt_ref = make_ref_table(L, NULL);
    lua_pop(L, 1);
    s->cancelled_ref = make_ref_table(L, l_cancelled_tostring);
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, l_timeout_tostring);
    lua_setfield(L, -2, "__tostring");
    s->timeout_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

int vx_open_task(lua_State *L) {
    vx_sched *s = vx_sched_from_lua(L);
    static const luaL_Reg fns[] = {{"spawn", l_spawn},
                                   {"sleep", l_sleep},
                                   {"yield", l_yield},
                                   {"park", l_park},
                                   {"unpark", l_unpark},
                                   {"current", l_current},
                                   {"hold_gc", l_hold_gc},
                                   {"release_gc", l_release_gc},
                                   {"join", l_join},
                                   {"cancel", l_cancel},
                                   {"status", l_status},
                                   {"list", l_list},
                                   {"alive", l_alive},
                                   {"deadline_push", l_deadline_push},
                                   {"deadline_pop", l_deadline_pop},
                                   {"now", l_now},
                                   {"hrtime", l_hrtime},
                                   {NULL, NULL}};
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->interrupt_ref);
    lua_setfield(L, -2, "INTERRUPT");
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->cancelled_ref);
    lua_setfield(L, -2, "CANCELLED");
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->timeout_mt_ref);
    lua_setfield(L, -2, "TIMEOUT_MT");
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->mt_ref);
    lua_getfield(L, -1, "__index");
    lua_setfield(L, -3, "methods");
    lua_pop(L, 1);
    return 1;
}
