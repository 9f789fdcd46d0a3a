/*
 * mdsink_lua.c — require "vibex.core.mdsink": market-data sinks as Lua
 * userdata, so their lifetime is the garbage collector's and a WebSocket
 * connection can take one as an option (ws.connect{sink = s}) and keep it
 * alive. Everything else (routes, quotes, counters) is reached through
 * LuaJIT FFI on the userdata's payload, which is the vx_md_sink itself
 * (vibex/marketdata.lua).
 */
#include "mdsink.h"
#include "vx_lua.h"

#define SINK_MT "vibex.md.sink"

static int l_new(lua_State *L) {
    vx_md_sink *s = lua_newuserdata(L, sizeof *s);
    vx_md_sink_init(s);
    luaL_getmetatable(L, SINK_MT);
    lua_setmetatable(L, -2);
    return 1;
}

static int l_sizeof(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)vx_md_sink_sizeof());
    return 1;
}

static int l_tostring(lua_State *L) {
    vx_md_sink *s = luaL_checkudata(L, 1, SINK_MT);
    lua_pushfstring(L, "<md sink: %d routes, %d quotes>", (int)s->nroutes, (int)s->nquotes);
    return 1;
}

struct vx_md_sink *vx_md_sink_check(lua_State *L, int idx) { return luaL_checkudata(L, idx, SINK_MT); }

int vx_open_mdsink(lua_State *L) {
    luaL_newmetatable(L, SINK_MT);
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {{"new", l_new}, {"sizeof", l_sizeof}, {NULL, NULL}};
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}
