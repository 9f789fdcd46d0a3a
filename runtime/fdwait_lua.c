/*
 * fdwait_lua.c — require "vibex.core.fdwait": wait in a task until a file
 * descriptor somebody else owns (a libpq connection's socket) is readable
 * or writable, on the runtime's libuv loop.
 *
 *   local w = fdwait.new(fd)
 *   local ev = w:wait("r" | "w" | "rw", soft)  -- yields; returns "r", "w" or "rw"
 *   w:close()                              -- before the fd is closed by its owner
 *
 * One uv_poll handle per watcher, reused across waits (no epoll churn per
 * query). Cancelling the task or passing its deadline stops the wait.
 */
#include <stdlib.h>
#include <string.h>

#include "task.h"
#include "vx_lua.h"

#define WATCH_MT "vibex.fdwait"

typedef struct poller {
    uv_poll_t poll;
    vx_task *waiter;
    int closed;
} poller;

typedef struct lwatch {
    poller *p; /* separately allocated: the handle outlives the userdata until its close callback */
    int fd;
} lwatch;

static void free_poller(uv_handle_t *h) { free(h->data); }

static void on_ready(uv_poll_t *h, int status, int events) {
    poller *p = h->data;
    uv_poll_stop(h);
    vx_task *t = p->waiter;
    p->waiter = NULL;
    if (!t) return;
    lua_State *co = vx_task_wake_begin(t);
    if (status < 0) {
        lua_pushnil(co);
        lua_pushstring(co, uv_strerror(status));
        vx_task_wake_end(t, 2);
        return;
    }
    const char *what = (events & UV_READABLE) && (events & UV_WRITABLE) ? "rw" : (events & UV_READABLE) ? "r" : "w";
    lua_pushstring(co, what);
    vx_task_wake_end(t, 1);
}

static void on_cancel(vx_task *t, void *op) {
    (void)t;
    poller *p = op;
    p->waiter = NULL;
    if (!p->closed) uv_poll_stop(&p->poll);
}

static int l_new(lua_State *L) {
    int fd = (int)luaL_checkinteger(L, 1);
    lwatch *w = lua_newuserdata(L, sizeof *w);
    memset(w, 0, sizeof *w);
    w->fd = fd;
    luaL_getmetatable(L, WATCH_MT);
    lua_setmetatable(L, -2);
    poller *p = calloc(1, sizeof *p);
    if (!p) return luaL_error(L, "fdwait: out of memory");
    int rc = uv_poll_init_socket(&vx_rt(L)->loop, &p->poll, fd);
    if (rc != 0) {
        free(p);
        lua_pushnil(L);
        lua_pushfstring(L, "fdwait: cannot watch fd %d: %s", fd, uv_strerror(rc));
        return 2;
    }
    p->poll.data = p;
    w->p = p;
    return 1;
}

static void close_watch(lwatch *w) {
    if (!w->p) return;
    poller *p = w->p;
    w->p = NULL;
    p->closed = 1;
    if (p->waiter) { /* a task still waits: it is told the watcher is gone */
        vx_task *t = p->waiter;
        p->waiter = NULL;
        lua_State *co = vx_task_wake_begin(t);
        lua_pushnil(co);
        lua_pushliteral(co, "fdwait: watcher closed");
        vx_task_wake_end(t, 2);
    }
    uv_close((uv_handle_t *)&p->poll, free_poller);
}

static int l_wait(lua_State *L) {
    lwatch *w = luaL_checkudata(L, 1, WATCH_MT);
    const char *what = luaL_optstring(L, 2, "r");
    if (!w->p) return luaL_error(L, "fdwait: wait on a closed watcher");
    if (w->p->waiter) return luaL_error(L, "fdwait: another task is already waiting on fd %d", w->fd);
    int events = (strchr(what, 'r') ? UV_READABLE : 0) | (strchr(what, 'w') ? UV_WRITABLE : 0);
    if (!events) return luaL_error(L, "fdwait: events must be \"r\", \"w\" or \"rw\"");
    vx_task *t = vx_task_prepare_wait(L, "fdwait");
    int rc = uv_poll_start(&w->p->poll, events, on_ready);
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "fdwait: %s", uv_strerror(rc));
        return 2;
    }
    w->p->waiter = t;
    /* soft waits (LISTEN) end at shutdown; a query in flight may finish in the grace period */
    return vx_task_wait(L, t, lua_toboolean(L, 3) ? VX_WAIT_SOFT : VX_WAIT_IO, on_cancel, w->p);
}

static int l_close(lua_State *L) {
    close_watch(luaL_checkudata(L, 1, WATCH_MT));
    return 0;
}

static int l_fd(lua_State *L) {
    lua_pushinteger(L, ((lwatch *)luaL_checkudata(L, 1, WATCH_MT))->fd);
    return 1;
}

int vx_open_fdwait(lua_State *L) {
    static const luaL_Reg methods[] = {{"wait", l_wait}, {"close", l_close}, {"fd", l_fd}, {NULL, NULL}};
    static const luaL_Reg fns[] = {{"new", l_new}, {NULL, NULL}};
    vx_new_class(L, WATCH_MT, methods, l_close);
    vx_new_module(L, fns);
    lua_insert(L, -2);
    lua_setfield(L, -2, "methods");
    return 1;
}
