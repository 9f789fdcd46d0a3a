/*
 * metrics_lua.c — require "vibex.core.metrics": registering families and
 * looking up series. Updates do not come through here: stdlib/vibex/metrics.lua
 * casts the series pointer to an FFI struct and adds to its value directly.
 */
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "vx_lua.h"

#define MAX_LABELS 16
#define MAX_BUCKETS 64

static int l_family(lua_State *L) {
    vx_runtime *rt = vx_rt(L);
    static const char *const types[] = {"counter", "gauge", "histogram", NULL};
    int type = luaL_checkoption(L, 1, NULL, types);
    const char *name = luaL_checkstring(L, 2);
    const char *help = luaL_optstring(L, 3, "");
    const char *labels[MAX_LABELS];
    double buckets[MAX_BUCKETS];
    int nlabels = 0, nbuckets = 0;
    if (!lua_isnoneornil(L, 4)) {
        luaL_checktype(L, 4, LUA_TTABLE);
        nlabels = (int)lua_objlen(L, 4);
        if (nlabels > MAX_LABELS) return luaL_error(L, "metrics: at most %d labels", MAX_LABELS);
        for (int i = 0; i < nlabels; i++) {
            lua_rawgeti(L, 4, i + 1);
            labels[i] = lua_tostring(L, -1);
            if (!labels[i]) return luaL_error(L, "metrics: label names must be strings");
            lua_pop(L, 1); /* the string stays alive in the table */
        }
    }
    if (!lua_isnoneornil(L, 5)) {
        luaL_checktype(L, 5, LUA_TTABLE);
        nbuckets = (int)lua_objlen(L, 5);
        if (nbuckets > MAX_BUCKETS) return luaL_error(L, "metrics: at most %d buckets", MAX_BUCKETS);
        for (int i = 0; i < nbuckets; i++) {
            lua_rawgeti(L, 5, i + 1);
            buckets[i] = luaL_checknumber(L, -1);
            lua_pop(L, 1);
        }
    }
    char err[256];
    vx_family *f = vx_metrics_family(rt->metrics, name, help, (vx_metric_type)type, nlabels,
                                     labels, nbuckets ? buckets : NULL, nbuckets, err, sizeof err);
    if (!f) return luaL_error(L, "metrics: %s", err);
    lua_pushlightuserdata(L, f);
    lua_pushinteger(L, nlabels);
    return 2;
}

/* series(family, v1, v2, …) -> lightuserdata of the series */
static int l_series(lua_State *L) {
    luaL_checktype(L, 1, LUA_TLIGHTUSERDATA);
    vx_family *f = lua_touserdata(L, 1);
    int n = vx_family_nlabels(f);
    if (lua_gettop(L) - 1 != n)
        return luaL_error(L, "metrics: expected %d label values, got %d", n, lua_gettop(L) - 1);
    const char *values[MAX_LABELS];
    for (int i = 0; i < n; i++) {
        values[i] = lua_tostring(L, i + 2); /* numbers become their decimal text */
        if (!values[i]) return luaL_error(L, "metrics: label value %d must be a string", i + 1);
    }
    vx_series *s = vx_family_series(f, values);
    if (!s) return luaL_error(L, "metrics: out of memory");
    lua_pushlightuserdata(L, s);
    return 1;
}

static int l_render(lua_State *L) {
    size_t len;
    char *text = vx_metrics_render(vx_rt(L)->metrics, &len);
    if (!text) return luaL_error(L, "metrics: out of memory");
    lua_pushlstring(L, text, len);
    free(text);
    return 1;
}

int vx_open_metrics(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"family", l_family}, {"series", l_series}, {"render", l_render}, {NULL, NULL}};
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}
