/*
 * fswatch_lua.c — require "vibex.core.fswatch": watch(dir, fn, debounce_ms).
 *
 * fn(names) runs in a new task for every debounced batch, so it may wait
 * (reload a script, re-read a config) without holding up the loop. The
 * watcher keeps its callback in the registry until :close().
 */
#include <string.h>

#include "fswatch.h"
#include "task.h"
#include "vx_lua.h"

#define WATCH_MT "vibex.fswatch"

typedef struct lwatch {
    vx_fswatch *w;
    lua_State *L;
    int fn_ref;
    int self_ref;
} lwatch;

static void on_batch(vx_fswatch *w, void *ud, char **names, int n) {
    (void)w;
    lwatch *lw = ud;
    lua_State *L = lw->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, lw->fn_ref);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushstring(L, names[i]);
        lua_rawseti(L, -2, i + 1);
    }
    vx_task_spawn(vx_sched_from_lua(L), L, 1, "fswatch");
    lua_pop(L, 1);
}

static void close_watch(lua_State *L, lwatch *lw) {
    if (!lw->w) return;
    vx_fswatch_stop(lw->w);
    lw->w = NULL;
    luaL_unref(L, LUA_REGISTRYINDEX, lw->fn_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, lw->self_ref);
    lw->fn_ref = lw->self_ref = LUA_NOREF;
}

static int l_watch(lua_State *L) {
    const char *dir = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    unsigned debounce = (unsigned)luaL_optnumber(L, 3, 20);
    lwatch *lw = lua_newuserdata(L, sizeof *lw);
    memset(lw, 0, sizeof *lw);
    lw->fn_ref = lw->self_ref = LUA_NOREF;
    luaL_getmetatable(L, WATCH_MT);
    lua_setmetatable(L, -2);
    char err[256];
    lw->w = vx_fswatch_start(vx_rt(L), dir, debounce, on_batch, lw, err, sizeof err);
    if (!lw->w) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    /* callbacks run on the main state, not on the task that made the watch */
    lw->L = vx_rt(L)->L;
    lua_pushvalue(L, 2);
    lw->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, -1);
    lw->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 1;
}

static int l_close(lua_State *L) {
    close_watch(L, luaL_checkudata(L, 1, WATCH_MT));
    return 0;
}

static int l_unref(lua_State *L) {
    lwatch *lw = luaL_checkudata(L, 1, WATCH_MT);
    if (lw->w) vx_fswatch_ref(lw->w, lua_toboolean(L, 2));
    return 0;
}

static int l_gc(lua_State *L) {
    lwatch *lw = luaL_checkudata(L, 1, WATCH_MT);
    if (lw->w) vx_fswatch_stop(lw->w);
    lw->w = NULL;
    return 0;
}

int vx_open_fswatch(lua_State *L) {
    static const luaL_Reg methods[] = {{"close", l_close}, {"ref", l_unref}, {NULL, NULL}};
    static const luaL_Reg fns[] = {{"watch", l_watch}, {NULL, NULL}};
    vx_new_class(L, WATCH_MT, methods, l_gc);
    lua_pop(L, 1);
    vx_new_module(L, fns);
    return 1;
}
