/*
 * vx_lua.h — helpers shared by the *_lua.c bindings.
 */
#ifndef VX_LUA_H
#define VX_LUA_H

#include <lauxlib.h>
#include <lua.h>

#include "vx.h"

/* The runtime that owns this Lua state. */
static inline vx_runtime *vx_rt(lua_State *L) {
    lua_getfield(L, LUA_REGISTRYINDEX, "vibex.rt");
    vx_runtime *rt = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return rt;
}

/* A class for userdata: the metatable `name` (in the registry) with a table
 * of `methods` as __index and `gc` as __gc (none when NULL). Leaves the
 * methods table on the stack (a module may hand it out, e.g. to wrap a
 * method in Lua). */
void vx_new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc);

/* A module table of functions, left on the stack. */
void vx_new_module(lua_State *L, const luaL_Reg *fns);

/* Option tables: t[key] as a number (dflt when absent; a clear error when
 * not a number), and t.headers ({Name = value} or {"Name: value"}) as
 * NULL-terminated "Name: value" strings kept alive in the table at `keep`. */
long vx_opt_long(lua_State *L, int tbl, const char *key, long dflt);
int vx_opt_headers(lua_State *L, int tbl, int keep, const char **out, int max, const char *what);

/* The openers of the C modules, preloaded as vibex.core.<name>. */
int vx_open_task(lua_State *L);
int vx_open_http(lua_State *L);
int vx_open_log(lua_State *L);
int vx_open_metrics(lua_State *L);
int vx_open_fswatch(lua_State *L);
int vx_open_process(lua_State *L);
int vx_open_runtime(lua_State *L);
int vx_open_repl(lua_State *L);
int vx_open_crypto(lua_State *L);
int vx_open_eth(lua_State *L);
int vx_open_ws(lua_State *L);
int vx_open_server(lua_State *L);
int vx_open_fdwait(lua_State *L);
int vx_open_mdsink(lua_State *L);
int vx_open_budget(lua_State *L);

/* The market-data sink at idx (a vibex.core.mdsink userdata), or a Lua error. */
struct vx_md_sink *vx_md_sink_check(lua_State *L, int idx);

#endif
