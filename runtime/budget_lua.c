/*
 * budget_lua.c — require "vibex.core.budget": enter and leave the runtime's
 * time and memory budget around untrusted calls (vibex.sandbox does this;
 * scripts never see this module).
 */
#include "budget.h"
#include "vx_lua.h"

static vx_budget *budget_of(lua_State *L) { return &vx_rt(L)->budget; }

static void push_trip(lua_State *L, int trip) {
    if (trip == VX_TRIP_NONE) lua_pushnil(L);
    else lua_pushstring(L, vx_budget_trip_name(trip));
}

/* pcall(time_ms, mem_bytes, fn, ...) -> trip|false, ok, results… | err
 * Enter, call fn protected, leave: nothing of Lua runs between the call's
 * end and leaving, so a tripped hook cannot fire outside the protection. */
static int l_pcall(lua_State *L) {
    lua_Number ms = luaL_checknumber(L, 1), mem = luaL_checknumber(L, 2);
    luaL_argcheck(L, ms > 0 && ms < 1e9, 1, "a time budget in milliseconds (0 < ms < 1e9)");
    luaL_argcheck(L, mem > 0 && mem < 9e18, 2, "a memory budget in bytes");
    luaL_checktype(L, 3, LUA_TFUNCTION);
    vx_budget *b = budget_of(L);
    int nargs = lua_gettop(L) - 3;
    if (vx_budget_enter(b, (uint64_t)ms, (int64_t)mem) != 0) {
        lua_pushboolean(L, 0);
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "budgets nested too deep");
        return 3;
    }
    int status = lua_pcall(L, nargs, LUA_MULTRET, 0);
    int trip = vx_budget_leave(b);
    int nres = lua_gettop(L) - 2; /* fn and args were replaced by results or the error */
    if (!lua_checkstack(L, 2)) return luaL_error(L, "budget.pcall: stack overflow");
    if (trip == VX_TRIP_NONE) lua_pushboolean(L, 0);
    else lua_pushstring(L, vx_budget_trip_name(trip));
    lua_pushboolean(L, status == 0);
    lua_insert(L, 3);
    lua_insert(L, 3);
    return nres + 2;
}

static int l_tripped(lua_State *L) {
    push_trip(L, vx_budget_tripped(budget_of(L)));
    return 1;
}

/* depth_address() -> the address of the depth, for an FFI read that the
 * JIT can compile (the string library's wrappers look at it on every call) */
static int l_depth_address(lua_State *L) {
    lua_pushlightuserdata(L, &budget_of(L)->depth);
    return 1;
}

static int l_depth(lua_State *L) {
    lua_pushinteger(L, budget_of(L)->depth);
    return 1;
}

static int l_stats(lua_State *L) {
    vx_budget *b = budget_of(L);
    lua_createtable(L, 0, 8);
    lua_pushnumber(L, (lua_Number)b->in_use);
    lua_setfield(L, -2, "in_use");
    lua_pushnumber(L, (lua_Number)b->peak_in_call);
    lua_setfield(L, -2, "peak_in_call");
    for (int t = VX_TRIP_TIME; t <= VX_TRIP_SIGNAL; t++) {
        lua_pushnumber(L, (lua_Number)b->trips[t]);
        lua_setfield(L, -2, vx_budget_trip_name(t));
    }
    lua_pushnumber(L, (lua_Number)vx_budget_signal_count());
    lua_setfield(L, -2, "signals");
    return 1;
}

int vx_open_budget(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"tripped", l_tripped}, {"pcall", l_pcall},
        {"depth", l_depth},     {"depth_address", l_depth_address},
        {"stats", l_stats},     {NULL, NULL},
    };
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}
