/*
 * log_lua.c — require "vibex.core.log": the structured logger for Lua.
 *
 * write(level, channel, msg, fields) turns a flat Lua table of fields into
 * typed log fields; nested tables are encoded as JSON here (depth-limited,
 * sorted keys so lines are stable) rather than through Lua, so a log call
 * never runs Lua code.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"
#include "vx_lua.h"

#define MAX_FIELDS 48
#define MAX_DEPTH 6

static void encode_value(lua_State *L, int idx, vx_buf *b, int depth, const char *key);

static int is_array(lua_State *L, int idx, size_t *n) {
    size_t len = lua_objlen(L, idx), count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        count++;
    }
    *n = len;
    return count == len;
}

static void encode_table(lua_State *L, int idx, vx_buf *b, int depth) {
    if (depth > MAX_DEPTH) {
        vx_buf_adds(b, "\"(nested too deep)\"");
        return;
    }
    size_t n;
    if (is_array(L, idx, &n) && n > 0) {
        vx_buf_addc(b, '[');
        for (size_t i = 1; i <= n; i++) {
            if (i > 1) vx_buf_addc(b, ',');
            lua_rawgeti(L, idx, (int)i);
            encode_value(L, lua_gettop(L), b, depth + 1, NULL);
            lua_pop(L, 1);
        }
        vx_buf_addc(b, ']');
        return;
    }
    vx_buf_addc(b, '{');
    int first = 1;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pushvalue(L, -2);
        const char *k = lua_tostring(L, -1); /* copy: tostring on the key itself confuses next */
        if (k) {
            if (!first) vx_buf_addc(b, ',');
            first = 0;
            vx_buf_addc(b, '"');
            vx_buf_add_json_escaped(b, k, strlen(k));
            vx_buf_adds(b, "\":");
            encode_value(L, lua_gettop(L) - 1, b, depth + 1, k);
        }
        lua_pop(L, 2);
    }
    vx_buf_addc(b, '}');
}

static void encode_value(lua_State *L, int idx, vx_buf *b, int depth, const char *key) {
    if (key && vx_log_is_secret_key(key)) {
        vx_buf_adds(b, "\"***\"");
        return;
    }
    switch (lua_type(L, idx)) {
    case LUA_TNUMBER: vx_buf_add_number(b, lua_tonumber(L, idx), "null", "null", "null"); break;
    case LUA_TBOOLEAN: vx_buf_adds(b, lua_toboolean(L, idx) ? "true" : "false"); break;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        vx_buf_addc(b, '"');
        vx_buf_add_json_escaped(b, s, n);
        vx_buf_addc(b, '"');
        break;
    }
    case LUA_TTABLE: encode_table(L, idx, b, depth); break;
    case LUA_TNIL: vx_buf_adds(b, "null"); break;
    default: {
        const char *s = lua_pushfstring(L, "%s: %p", luaL_typename(L, idx), lua_topointer(L, idx));
        vx_buf_addc(b, '"');
        vx_buf_add_json_escaped(b, s, strlen(s));
        vx_buf_addc(b, '"');
        lua_pop(L, 1);
    }
    }
}

static int collect_fields(lua_State *L, int idx, vx_field *f, vx_buf *raw) {
    int n = 0;
    if (lua_isnoneornil(L, idx)) return 0;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (n == MAX_FIELDS) { /* the rest are dropped; the line still goes out */
            lua_pop(L, 2);
            break;
        }
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 1);
            continue;
        }
        vx_field *x = &f[n];
        memset(x, 0, sizeof *x);
        x->key = lua_tostring(L, -2);
        int t = lua_type(L, -1);
        if (t == LUA_TNUMBER) {
            x->type = VX_F_NUM;
            x->n = lua_tonumber(L, -1);
        } else if (t == LUA_TBOOLEAN) {
            x->type = VX_F_BOOL;
            x->i = lua_toboolean(L, -1);
        } else if (t == LUA_TSTRING) {
            x->type = VX_F_STR;
            x->s = lua_tolstring(L, -1, &x->slen);
        } else {
            /* encode into the shared buffer; offsets fixed up below */
            x->type = VX_F_RAW;
            x->i = (int64_t)raw->len;
            encode_value(L, lua_gettop(L), raw, 0, x->key);
            x->slen = raw->len - (size_t)x->i;
        }
        n++;
        lua_pop(L, 1); /* keys and string values stay alive in the table */
    }
    for (int i = 0; i < n; i++)
        if (f[i].type == VX_F_RAW) f[i].s = raw->p + f[i].i;
    return n;
}

static int check_level(lua_State *L, int idx) {
    const char *name = luaL_checkstring(L, idx);
    int level = vx_log_level_from_name(name);
    if (level < 0)
        return luaL_error(L, "log: unknown level '%s' (use debug, info, warn, error)", name);
    return level;
}

static int l_write(lua_State *L) {
    vx_runtime *rt = vx_rt(L);
    int level = check_level(L, 1);
    const char *chname = luaL_checkstring(L, 2);
    int channel = vx_log_channel_from_name(chname);
    if (channel < 0)
        return luaL_error(L, "log: unknown channel '%s' (use app, trading, market_data, llm, errors)",
                          chname);
    const char *msg = luaL_checkstring(L, 3);
    vx_field fields[MAX_FIELDS];
    vx_buf raw;
    vx_buf_init(&raw);
    int n = collect_fields(L, 4, fields, &raw);
    vx_log_write(rt->log, (vx_level)level, channel, msg, fields, n);
    vx_buf_free(&raw);
    return 0;
}

static int l_enabled(lua_State *L) {
    vx_runtime *rt = vx_rt(L);
    vx_log_config c;
    vx_log_get_config(rt->log, &c);
    int level = check_level(L, 1);
    lua_pushboolean(L, level >= (int)c.level || level >= (int)c.console_level);
    return 1;
}

static int field_level(lua_State *L, const char *key, vx_level dflt) {
    lua_getfield(L, 1, key);
    int v = dflt;
    if (!lua_isnil(L, -1)) v = check_level(L, -1);
    lua_pop(L, 1);
    return v;
}

static int l_configure(lua_State *L) {
    vx_runtime *rt = vx_rt(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    vx_log_config c;
    vx_log_get_config(rt->log, &c);
    lua_getfield(L, 1, "dir");
    c.dir = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
    c.level = (vx_level)field_level(L, "level", c.level);
    c.console_level = (vx_level)field_level(L, "console_level", c.console_level);
    lua_getfield(L, 1, "console");
    if (!lua_isnil(L, -1)) {
        const char *f = luaL_checkstring(L, -1);
        if (!strcmp(f, "auto")) c.console = VX_CONSOLE_AUTO;
        else if (!strcmp(f, "text")) c.console = VX_CONSOLE_TEXT;
        else if (!strcmp(f, "json")) c.console = VX_CONSOLE_JSON;
        else if (!strcmp(f, "none")) c.console = VX_CONSOLE_NONE;
        else return luaL_error(L, "log.configure: console must be auto, text, json or none");
    }
    lua_getfield(L, 1, "color");
    if (!lua_isnil(L, -1)) c.color = lua_toboolean(L, -1);
    lua_getfield(L, 1, "max_bytes");
    if (!lua_isnil(L, -1)) c.max_bytes = (size_t)luaL_checknumber(L, -1);
    lua_getfield(L, 1, "keep");
    if (!lua_isnil(L, -1)) c.keep = (int)luaL_checknumber(L, -1);
    char err[256];
    if (vx_log_configure(rt->log, &c, err, sizeof err) != 0)
        return luaL_error(L, "log.configure: %s", err);
    return 0;
}

static int l_config(lua_State *L) {
    vx_runtime *rt = vx_rt(L);
    vx_log_config c;
    vx_log_get_config(rt->log, &c);
    static const char *const consoles[] = {"auto", "text", "json", "none"};
    lua_createtable(L, 0, 7);
    lua_pushstring(L, c.dir);
    lua_setfield(L, -2, "dir");
    lua_pushstring(L, vx_log_level_name(c.level));
    lua_setfield(L, -2, "level");
    lua_pushstring(L, vx_log_level_name(c.console_level));
    lua_setfield(L, -2, "console_level");
    lua_pushstring(L, consoles[c.console]);
    lua_setfield(L, -2, "console");
    lua_pushnumber(L, (double)c.max_bytes);
    lua_setfield(L, -2, "max_bytes");
    lua_pushinteger(L, c.keep);
    lua_setfield(L, -2, "keep");
    return 1;
}

static int l_add_secret(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    if (vx_log_add_secret(vx_rt(L)->log, s, n) != 0)
        return luaL_error(L, "log.add_secret: too many secrets registered");
    return 0;
}

static int l_redact(lua_State *L) {
    size_t n, out;
    const char *s = luaL_checklstring(L, 1, &n);
    char *r = vx_log_redact(vx_rt(L)->log, s, n, &out);
    if (!r) return luaL_error(L, "log.redact: out of memory");
    lua_pushlstring(L, r, out);
    free(r);
    return 1;
}

/* mask_secrets(s): s with every registered secret value replaced by ***
 * (the same string when none occurs: no copy on the common path). */
static int l_mask_secrets(lua_State *L) {
    size_t n, out;
    const char *s = luaL_checklstring(L, 1, &n);
    const vx_log *log = vx_rt(L)->log;
    if (!vx_log_has_secret(log, s, n)) {
        lua_settop(L, 1);
        return 1;
    }
    char *r = vx_log_mask_secrets(log, s, n, &out);
    if (!r) return luaL_error(L, "log.mask_secrets: out of memory");
    lua_pushlstring(L, r, out);
    free(r);
    return 1;
}

static int l_is_secret_key(lua_State *L) {
    lua_pushboolean(L, vx_log_is_secret_key(luaL_checkstring(L, 1)));
    return 1;
}

static int l_flush(lua_State *L) {
    vx_log_flush(vx_rt(L)->log);
    return 0;
}

static int l_counts(lua_State *L) {
    vx_runtime *rt = vx_rt(L);
    lua_createtable(L, 0, 4);
    for (int lv = VX_DEBUG; lv < VX_OFF; lv++) {
        lua_pushnumber(L, (double)vx_log_count(rt->log, (vx_level)lv));
        lua_setfield(L, -2, vx_log_level_name((vx_level)lv));
    }
    return 1;
}

int vx_open_log(lua_State *L) {
    static const luaL_Reg fns[] = {{"write", l_write},
                                   {"enabled", l_enabled},
                                   {"configure", l_configure},
                                   {"config", l_config},
                                   {"add_secret", l_add_secret},
                                   {"redact", l_redact},
                                   {"mask_secrets", l_mask_secrets},
                                   {"is_secret_key", l_is_secret_key},
                                   {"flush", l_flush},
                                   {"counts", l_counts},
                                   {NULL, NULL}};
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}
