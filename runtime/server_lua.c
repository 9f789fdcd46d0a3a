/*
 * server_lua.c — require "vibex.core.server": an HTTP + WebSocket server
 * whose requests are handled by Lua tasks.
 *
 *   srv, err = server.listen{bind=, port=, static_dir=, prefixes={"/api", …}, ws_path=,
 *                            max_body=, max_ws_queue=, timeout_s=, max_conns=, tls_cert=, tls_key=,
 *                            on_request = function(req) … end,
 *                            on_ws = function(event, client, text) … end}  -- "open" | "message" | "close"
 *   srv:port()  srv:stats()  srv:close()
 *
 *   req:method() req:path() req:query() req:header(name) req:body() req:peer()
 *   ok, err = req:respond(status, content_type, body [, {Name = value, …}])
 *   client:id() client:query() client:header(name) client:peer()
 *   ok, err = client:send(text)     client:close([code])
 *
 * Every request and WebSocket event runs its handler in a task of its own
 * (a handler may wait on the database); an error in one is its task's.
 */
#include <stdlib.h>
#include <string.h>

#include "server.h"
#include "task.h"
#include "vx_lua.h"

#define SRV_MT "vibex.server"
#define REQ_MT "vibex.server.request"
#define WS_MT "vibex.server.client"

typedef struct lserver {
    vx_server *s;
    lua_State *L;          /* the main state: events come from the loop */
    int on_request, on_ws; /* registry refs */
    int self_ref;
} lserver;

typedef struct lreq { vx_srv_req *r; } lreq;
typedef struct lws_client { vx_srv_ws *c; } lws_client;

static void spawn(lserver *ls, int fn_ref, int nargs, const char *name) {
    lua_State *L = ls->L;
    /* the function goes under its arguments */
    lua_rawgeti(L, LUA_REGISTRYINDEX, fn_ref);
    lua_insert(L, -(nargs + 1));
    vx_task_spawn(vx_sched_from_lua(L), L, nargs, name);
    lua_pop(L, 1); /* the task handle */
}

static void on_request(vx_srv_req *r, void *ud) {
    lserver *ls = ud;
    lreq *u = lua_newuserdata(ls->L, sizeof *u);
    u->r = r;
    luaL_getmetatable(ls->L, REQ_MT);
    lua_setmetatable(ls->L, -2);
    spawn(ls, ls->on_request, 1, "api-request");
}

static void push_client(lserver *ls, vx_srv_ws *c) {
    lws_client *u = lua_newuserdata(ls->L, sizeof *u);
    u->c = c;
    luaL_getmetatable(ls->L, WS_MT);
    lua_setmetatable(ls->L, -2);
}

/* The client's userdata is made once, at open, and kept by the Lua side in
 * a table by id; message and close events pass the id. */
static void on_ws_open(vx_srv_ws *c, void *ud) {
    lserver *ls = ud;
    lua_pushliteral(ls->L, "open");
    push_client(ls, c);
    lua_pushnil(ls->L);
    spawn(ls, ls->on_ws, 3, "api-stream");
}

static void on_ws_message(vx_srv_ws *c, const char *p, size_t n, void *ud) {
    lserver *ls = ud;
    lua_pushliteral(ls->L, "message");
    lua_pushnumber(ls->L, (lua_Number)vx_srv_ws_id(c));
    lua_pushlstring(ls->L, p, n);
    spawn(ls, ls->on_ws, 3, "api-stream");
}

static void on_ws_closed(vx_srv_ws *c, void *ud) {
    lserver *ls = ud;
    lua_pushliteral(ls->L, "close");
    lua_pushnumber(ls->L, (lua_Number)vx_srv_ws_id(c));
    lua_pushnil(ls->L);
    spawn(ls, ls->on_ws, 3, "api-stream");
}

static const vx_server_events EVENTS = {on_request, on_ws_open, on_ws_message, on_ws_closed};

static const char *opt_string(lua_State *L, int t, const char *k) {
    lua_getfield(L, t, k);
    const char *s = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
    lua_pop(L, 1); /* the table keeps the string alive */
    return s;
}

static lua_Integer opt_int(lua_State *L, int t, const char *k, lua_Integer def) {
    lua_getfield(L, t, k);
    lua_Integer v = luaL_optinteger(L, -1, def);
    lua_pop(L, 1);
    return v;
}

static int ref_function(lua_State *L, int t, const char *k) {
    lua_getfield(L, t, k);
    if (!lua_isfunction(L, -1)) return luaL_error(L, "server.listen: '%s' must be a function", k);
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

static int l_listen(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    vx_server_opts o = {0};
    o.bind = opt_string(L, 1, "bind");
    o.port = (int)opt_int(L, 1, "port", 0);
    o.static_dir = opt_string(L, 1, "static_dir");
    o.ws_path = opt_string(L, 1, "ws_path");
    o.max_body = (size_t)opt_int(L, 1, "max_body", 0);
    o.max_ws_queue = (size_t)opt_int(L, 1, "max_ws_queue", 0);
    o.timeout_s = (unsigned)opt_int(L, 1, "timeout_s", 0);
    o.max_conns = (unsigned)opt_int(L, 1, "max_conns", 0);
    o.tls_cert = opt_string(L, 1, "tls_cert");
    o.tls_key = opt_string(L, 1, "tls_key");
    const char *prefixes[9] = {0};
    lua_getfield(L, 1, "prefixes");
    for (int i = 0; lua_istable(L, -1) && i < 8; i++) {
        lua_rawgeti(L, -1, i + 1);
        if (lua_isnil(L, -1)) { lua_pop(L, 1); break; }
        prefixes[i] = luaL_checkstring(L, -1);
        lua_pop(L, 1); /* still referenced by the table */
    }
    lua_pop(L, 1); /* the table stays referenced by the options */
    o.prefixes = prefixes;
    lserver *ls = lua_newuserdata(L, sizeof *ls);
    memset(ls, 0, sizeof *ls);
    ls->on_request = ls->on_ws = ls->self_ref = LUA_NOREF;
    luaL_getmetatable(L, SRV_MT);
    lua_setmetatable(L, -2);
    ls->L = vx_rt(L)->L;
    ls->on_request = ref_function(L, 1, "on_request");
    ls->on_ws = ref_function(L, 1, "on_ws");
    char err[256];
    ls->s = vx_server_new(vx_rt(L), &o, &EVENTS, ls, err, sizeof err);
    if (!ls->s) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    /* the C side points at it: it lives until closed */
    lua_pushvalue(L, -1);
    ls->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 1;
}

static lserver *check_server(lua_State *L) { return luaL_checkudata(L, 1, SRV_MT); }

static int l_port(lua_State *L) {
    lserver *ls = check_server(L);
    lua_pushinteger(L, ls->s ? vx_server_port(ls->s) : -1);
    return 1;
}

static int l_stats(lua_State *L) {
    lserver *ls = check_server(L);
    vx_server_stats st = {0};
    if (ls->s) vx_server_get_stats(ls->s, &st);
    lua_createtable(L, 0, 6);
    lua_pushnumber(L, st.requests), lua_setfield(L, -2, "requests");
    lua_pushnumber(L, st.rejected_body), lua_setfield(L, -2, "rejected_body");
    lua_pushnumber(L, st.ws_opened), lua_setfield(L, -2, "ws_opened");
    lua_pushnumber(L, st.ws_dropped_slow), lua_setfield(L, -2, "ws_dropped_slow");
    lua_pushnumber(L, (lua_Number)st.ws_clients), lua_setfield(L, -2, "ws_clients");
    lua_pushnumber(L, (lua_Number)st.pending), lua_setfield(L, -2, "pending");
    return 1;
}

static int l_close(lua_State *L) {
    lserver *ls = check_server(L);
    if (ls->s) vx_server_close(ls->s);
    ls->s = NULL;
    if (ls->on_request != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, ls->on_request);
    if (ls->on_ws != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, ls->on_ws);
    if (ls->self_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, ls->self_ref);
    ls->on_request = ls->on_ws = ls->self_ref = LUA_NOREF;
    return 0;
}

/* ---- requests ------------------------------------------------------------------------------ */

static vx_srv_req *check_req(lua_State *L) {
    lreq *u = luaL_checkudata(L, 1, REQ_MT);
    if (!u->r) luaL_error(L, "this request was answered already");
    return u->r;
}

static int push_opt(lua_State *L, const char *s) {
    if (s) lua_pushstring(L, s);
    else lua_pushnil(L);
    return 1;
}

static int l_req_method(lua_State *L) { return push_opt(L, vx_srv_req_method(check_req(L))); }
static int l_req_path(lua_State *L) { return push_opt(L, vx_srv_req_path(check_req(L))); }
static int l_req_query(lua_State *L) { return push_opt(L, vx_srv_req_query(check_req(L))); }
static int l_req_peer(lua_State *L) { return push_opt(L, vx_srv_req_peer(check_req(L))); }
static int l_req_header(lua_State *L) {
    vx_srv_req *r = check_req(L);
    return push_opt(L, vx_srv_req_header(r, luaL_checkstring(L, 2)));
}
static int l_req_body(lua_State *L) {
    size_t n;
    const char *p = vx_srv_req_body(check_req(L), &n);
    lua_pushlstring(L, p, n);
    return 1;
}

static int l_req_respond(lua_State *L) {
    vx_srv_req *r = check_req(L);
    int status = (int)luaL_checkinteger(L, 2);
    const char *ctype = luaL_optstring(L, 3, "application/json");
    size_t n = 0;
    const char *body = luaL_optlstring(L, 4, "", &n);
    const char *pairs[33] = {0};
    int k = 0;
    if (lua_istable(L, 5)) {
        lua_pushnil(L);
        while (lua_next(L, 5) && k < 32) {
            pairs[k++] = luaL_checkstring(L, -2);
            pairs[k++] = luaL_checkstring(L, -1);
            lua_pop(L, 1);
        }
    }
    int rc = vx_srv_respond(r, status, ctype, pairs, body, n);
    lreq *u = lua_touserdata(L, 1);
    u->r = NULL; /* the connection sends it; the Lua side is done with it */
    vx_srv_req_release(r);
    if (rc) {
        lua_pushnil(L);
        lua_pushliteral(L, "the client is gone");
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_req_gc(lua_State *L) {
    lreq *u = luaL_checkudata(L, 1, REQ_MT);
    if (u->r) vx_srv_req_release(u->r);
    u->r = NULL;
    return 0;
}

/* ---- WebSocket clients ----------------------------------------------------------------------- */

static vx_srv_ws *check_client(lua_State *L) {
    lws_client *u = luaL_checkudata(L, 1, WS_MT);
    if (!u->c) luaL_error(L, "this client was released");
    return u->c;
}

static int l_ws_id(lua_State *L) {
    lua_pushnumber(L, (lua_Number)vx_srv_ws_id(check_client(L)));
    return 1;
}
static int l_ws_query(lua_State *L) { return push_opt(L, vx_srv_ws_query(check_client(L))); }
static int l_ws_peer(lua_State *L) { return push_opt(L, vx_srv_ws_peer(check_client(L))); }
static int l_ws_header(lua_State *L) {
    vx_srv_ws *c = check_client(L);
    return push_opt(L, vx_srv_ws_header(c, luaL_checkstring(L, 2)));
}

static int l_ws_send(lua_State *L) {
    vx_srv_ws *c = check_client(L);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    if (vx_srv_ws_send(c, p, n)) {
        lua_pushnil(L);
        lua_pushliteral(L, "the client is gone or too slow");
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_ws_close(lua_State *L) {
    vx_srv_ws_close(check_client(L), (int)luaL_optinteger(L, 2, 1000));
    return 0;
}

static int l_ws_gc(lua_State *L) {
    lws_client *u = luaL_checkudata(L, 1, WS_MT);
    if (u->c) vx_srv_ws_release(u->c);
    u->c = NULL;
    return 0;
}

static void new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc) {
    luaL_newmetatable(L, name);
    lua_newtable(L);
    luaL_register(L, NULL, methods);
    lua_setfield(L, -2, "__index");
    if (gc) {
        lua_pushcfunction(L, gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
}

int vx_open_server(lua_State *L) {
    static const luaL_Reg srv[] = {{"port", l_port}, {"stats", l_stats}, {"close", l_close}, {NULL, NULL}};
    static const luaL_Reg req[] = {{"method", l_req_method}, {"path", l_req_path},   {"query", l_req_query},
                                   {"header", l_req_header}, {"body", l_req_body},   {"peer", l_req_peer},
                                   {"respond", l_req_respond}, {NULL, NULL}};
    static const luaL_Reg ws[] = {{"id", l_ws_id},       {"query", l_ws_query}, {"header", l_ws_header},
                                  {"peer", l_ws_peer},   {"send", l_ws_send},   {"close", l_ws_close},
                                  {NULL, NULL}};
    new_class(L, SRV_MT, srv, l_close);
    new_class(L, REQ_MT, req, l_req_gc);
    new_class(L, WS_MT, ws, l_ws_gc);
    static const luaL_Reg fns[] = {{"listen", l_listen}, {NULL, NULL}};
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}
