/*
 * http_lua.c — require "vibex.core.http": http.request{…} for tasks.
 *
 * request(opts) yields the calling task until the response (or failure)
 * arrives and returns {status, headers, body, http_version, time_ms,
 * started_ns, sent_ns (monotonic: when it started, when its bytes went to the
 * socket)}, or
 * nil, message, kind. Cancelling the task or passing its deadline aborts the
 * transfer.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "http.h"
#include "task.h"
#include "vx_lua.h"

#define MAX_HEADERS 64

static void push_headers(lua_State *L, const vx_buf *raw) {
    lua_newtable(L);
    const char *p = raw->p, *end = raw->p + raw->len;
    while (p && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (colon && colon > p && memcmp(p, "HTTP/", 5) != 0) {
            char name[128];
            size_t n = (size_t)(colon - p);
            if (n < sizeof name) {
                for (size_t i = 0; i < n; i++) name[i] = (char)tolower((unsigned char)p[i]);
                name[n] = '\0';
                const char *v = colon + 1, *ve = eol;
                while (v < ve && (*v == ' ' || *v == '\t')) v++;
                while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ')) ve--;
                lua_getfield(L, -1, name);
                if (lua_isstring(L, -1)) { /* repeated header: join like HTTP does */
                    lua_pushliteral(L, ", ");
                    lua_pushlstring(L, v, (size_t)(ve - v));
                    lua_concat(L, 3);
                } else {
                    lua_pop(L, 1);
                    lua_pushlstring(L, v, (size_t)(ve - v));
                }
                lua_setfield(L, -2, name);
            }
        }
        p = eol + 1;
    }
}

static void on_done(vx_http_req *req, vx_http_result *res, void *ud) {
    (void)req;
    vx_task *t = ud;
    lua_State *co = vx_task_wake_begin(t);
    lua_checkstack(co, 8);
    if (!res->ok) {
        lua_pushnil(co);
        lua_pushstring(co, res->error);
        lua_pushstring(co, res->error_kind);
        vx_task_wake_end(t, 3);
        return;
    }
    lua_createtable(co, 0, 7);
    lua_pushinteger(co, (lua_Integer)res->status);
    lua_setfield(co, -2, "status");
    push_headers(co, &res->headers);
    lua_setfield(co, -2, "headers");
    lua_pushlstring(co, res->body.p ? res->body.p : "", res->body.len);
    lua_setfield(co, -2, "body");
    lua_pushinteger(co, res->http_version);
    lua_setfield(co, -2, "http_version");
    lua_pushnumber(co, res->total_ms);
    lua_setfield(co, -2, "time_ms");
    lua_pushnumber(co, (double)res->started_ns);
    lua_setfield(co, -2, "started_ns");
    lua_pushnumber(co, (double)res->sent_ns);
    lua_setfield(co, -2, "sent_ns");
    vx_task_wake_end(t, 1);
}

static void on_cancel(vx_task *t, void *op) {
    (void)t;
    vx_http_cancel(op);
}

static int l_request(lua_State *L) {
    vx_runtime *rt = vx_rt(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_newtable(L); /* 2: keeps header strings alive */
    vx_http_opts o;
    memset(&o, 0, sizeof o);
    const char *headers[MAX_HEADERS + 1];
    lua_getfield(L, 1, "url");
    o.url = lua_tostring(L, -1);
    lua_getfield(L, 1, "method");
    o.method = lua_tostring(L, -1);
    lua_getfield(L, 1, "body");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "http.request: 'body' must be a string (encode tables with json.encode)");
    o.body = lua_tolstring(L, -1, &o.body_len);
    lua_getfield(L, 1, "cainfo");
    o.cainfo = lua_tostring(L, -1);
    lua_getfield(L, 1, "insecure");
    o.insecure = lua_toboolean(L, -1);
    if (!o.url) return luaL_error(L, "http.request: 'url' (a string) is required");
    vx_opt_headers(L, 1, 2, headers, MAX_HEADERS, "http.request");
    o.headers = headers;
    o.timeout_ms = vx_opt_long(L, 1, "timeout_ms", 0);
    o.connect_timeout_ms = vx_opt_long(L, 1, "connect_timeout_ms", 0);
    o.max_body_bytes = (size_t)vx_opt_long(L, 1, "max_body_bytes", 0);
    o.http_version = (int)vx_opt_long(L, 1, "http_version", 0);
    if (rt->shutting_down) {
        lua_pushnil(L);
        lua_pushliteral(L, "http: the runtime is shutting down; request not sent");
        lua_pushliteral(L, "shutdown");
        return 3;
    }
    vx_task *t = vx_task_prepare_wait(L, "http.request");
    if (!rt->http && !(rt->http = vx_http_new(rt)))
        return luaL_error(L, "http.request: could not initialise libcurl");
    char err[256];
    vx_http_req *req = vx_http_start(rt->http, &o, on_done, t, err, sizeof err);
    if (!req) {
        lua_pushnil(L);
        lua_pushfstring(L, "http.request: %s", err);
        lua_pushliteral(L, "invalid");
        return 3;
    }
    return vx_task_wait(L, t, VX_WAIT_IO, on_cancel, req);
}

static int l_in_flight(lua_State *L) {
    vx_runtime *rt = vx_rt(L);
    lua_pushnumber(L, rt->http ? (double)vx_http_in_flight(rt->http) : 0);
    return 1;
}

int vx_open_http(lua_State *L) {
    static const luaL_Reg fns[] = {{"request", l_request}, {"in_flight", l_in_flight}, {NULL, NULL}};
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}
