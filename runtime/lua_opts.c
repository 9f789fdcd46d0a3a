/*
 * lua_opts.c — what the *_lua.c bindings share: reading the option tables
 * they take ({url = …, timeout_ms = …, headers = {…}}), and making their
 * userdata classes and module tables, one way for all of them.
 */
#include "vx_lua.h"

long vx_opt_long(lua_State *L, int tbl, const char *key, long dflt) {
    lua_getfield(L, tbl, key);
    long v = lua_isnil(L, -1) ? dflt : (long)luaL_checknumber(L, -1);
    lua_pop(L, 1);
    return v;
}

int vx_opt_headers(lua_State *L, int tbl, int keep, const char **out, int max, const char *what) {
    int n = 0;
    lua_getfield(L, tbl, "headers");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        out[0] = NULL;
        return 0;
    }
    if (!lua_istable(L, -1)) luaL_error(L, "%s: 'headers' must be a table", what);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        if (n == max) luaL_error(L, "%s: more than %d headers", what, max);
        if (lua_type(L, -2) == LUA_TSTRING) { /* {Name = value} */
            lua_pushvalue(L, -2);
            lua_pushliteral(L, ": ");
            lua_pushvalue(L, -3);
            lua_concat(L, 3);
        } else { /* {"Name: value"} */
            lua_pushvalue(L, -1);
        }
        if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "%s: header values must be strings", what);
        out[n] = lua_tostring(L, -1);
        lua_rawseti(L, keep, ++n); /* keep the string alive */
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    out[n] = NULL;
    return n;
}

void vx_new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc) {
    luaL_newmetatable(L, name);
    vx_new_module(L, methods);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "__index");
    if (gc) {
        lua_pushcfunction(L, gc);
        lua_setfield(L, -3, "__gc");
    }
    lua_remove(L, -2); /* the metatable stays in the registry */
}

void vx_new_module(lua_State *L, const luaL_Reg *fns) {
    lua_newtable(L);
    luaL_register(L, NULL, fns);
}
