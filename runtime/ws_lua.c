/*
 * ws_lua.c — require "vibex.core.ws": WebSocket client connections for tasks.
 *
 *   conn, err = ws.connect{url=…, headers=…, ping_s=…, hangup_s=…, insecure=…,
 *                          max_message=…, max_queue=…}   -- waits until open
 *   msg, err, kind, code = conn:recv()   -- waits for the next message
 *   msg = conn:poll()                    -- next queued message or nil, no wait
 *   ok, err = conn:send(text)
 *   conn:close([code])
 *   conn:status()  -> "connecting" | "open" | "closed"
 *   conn:stats()   -> {received=, queued=, queued_bytes=, paused=, pending_send=}
 *
 * Messages queue in C between loop turns, so a task draining with recv()
 * takes everything that arrived without yielding. Past max_queue bytes the
 * socket stops being read (TCP backpressure) until the queue drains.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "mdsink.h"
#include "task.h"
#include "vx_lua.h"
#include "ws.h"

#define CONN_MT "vibex.ws.conn"
#define MAX_HEADERS 32

enum { ST_CONNECTING, ST_OPEN, ST_CLOSED };

typedef struct lconn {
    vx_ws_conn *c;      /* NULL once closed */
    lua_State *L;       /* the main state: callbacks come from the loop */
    int self_ref;       /* keeps the userdata alive while the connection is */
    vx_task *waiter;    /* the task in connect() or recv() */
    int state;
    vx_buf q;           /* queued messages: uint32 length, then the bytes */
    size_t q_head;
    size_t q_count;
    size_t high, low;   /* backpressure marks in queued bytes */
    int paused;
    double received;
    int close_code;
    char close_reason[300];
    vx_md_sink *sink;   /* offered every message first (market data), or NULL */
    int sink_ref;       /* keeps the sink alive while the connection is */
    double sunk;        /* messages the sink took */
} lconn;

static size_t queued_bytes(const lconn *lc) { return lc->q.len - lc->q_head; }

static void release_self(lconn *lc) {
    if (lc->self_ref != LUA_NOREF) luaL_unref(lc->L, LUA_REGISTRYINDEX, lc->self_ref);
    lc->self_ref = LUA_NOREF;
    /* no message comes after this: the sink may go */
    if (lc->sink_ref != LUA_NOREF) luaL_unref(lc->L, LUA_REGISTRYINDEX, lc->sink_ref);
    lc->sink_ref = LUA_NOREF;
    lc->sink = NULL;
}

static void wake_with_message(lconn *lc, const char *p, size_t n) {
    vx_task *t = lc->waiter;
    lc->waiter = NULL;
    lua_State *co = vx_task_wake_begin(t);
    lua_pushlstring(co, p, n);
    vx_task_wake_end(t, 1);
}

static void on_open(vx_ws_conn *c, void *ud) {
    (void)c;
    lconn *lc = ud;
    lc->state = ST_OPEN;
    if (!lc->waiter) return;
    vx_task *t = lc->waiter;
    lc->waiter = NULL;
    lua_State *co = vx_task_wake_begin(t);
    lua_rawgeti(co, LUA_REGISTRYINDEX, lc->self_ref);
    vx_task_wake_end(t, 1);
}

static void on_closed(vx_ws_conn *c, int code, const char *reason, void *ud);

static void on_message(vx_ws_conn *c, const char *p, size_t n, int binary, void *ud) {
    (void)c;
    lconn *lc = ud;
    lc->received++;
    /* market data the sink applies never becomes a Lua string */
    if (lc->sink && !binary && vx_md_sink_offer(lc->sink, p, n)) {
        lc->sunk++;
        return;
    }
    if (lc->waiter && lc->q_count == 0) {
        wake_with_message(lc, p, n);
        return;
    }
    uint32_t len = (uint32_t)n;
    vx_buf_add(&lc->q, &len, sizeof len);
    vx_buf_add(&lc->q, p, n);
    if (lc->q.oom) { /* out of memory: drop the queue; the gap check after reconnect recovers */
        vx_buf_free(&lc->q);
        lc->q_head = lc->q_count = 0;
        vx_ws_close(lc->c, 1011, NULL);
        on_closed(NULL, 1011, "out of memory queueing messages", lc);
        return;
    }
    lc->q_count++;
    if (!lc->paused && queued_bytes(lc) > lc->high) {
        lc->paused = 1;
        vx_ws_read_enable(lc->c, 0);
    }
}

/* nil, why, kind ("closed" or "connect"), close code: what recv/connect give for an ended connection */
static int push_close_info(lua_State *L, const lconn *lc, const char *kind) {
    lua_pushnil(L);
    lua_pushstring(L, lc->close_reason[0] ? lc->close_reason : "not connected");
    lua_pushstring(L, kind);
    lua_pushinteger(L, lc->close_code);
    return 4;
}

static void wake_closed(lconn *lc, const char *kind) {
    vx_task *t = lc->waiter;
    lc->waiter = NULL;
    lua_State *co = vx_task_wake_begin(t);
    vx_task_wake_end(t, push_close_info(co, lc, kind));
}

static void on_closed(vx_ws_conn *c, int code, const char *reason, void *ud) {
    (void)c;
    lconn *lc = ud;
    int was_connecting = lc->state == ST_CONNECTING;
    lc->state = ST_CLOSED;
    lc->c = NULL;
    lc->close_code = code;
    snprintf(lc->close_reason, sizeof lc->close_reason, "%s", reason);
    if (lc->waiter && (was_connecting || lc->q_count == 0)) wake_closed(lc, was_connecting ? "connect" : "closed");
    release_self(lc);
}

static const vx_ws_events events = {on_open, on_message, on_closed};

static void close_conn(lconn *lc, int code) {
    if (lc->c) vx_ws_close(lc->c, code, NULL); /* no callback comes after this */
    lc->c = NULL;
    if (lc->state != ST_CLOSED) {
        lc->state = ST_CLOSED;
        lc->close_code = code;
        snprintf(lc->close_reason, sizeof lc->close_reason, "closed by us (%d)", code);
    }
    if (lc->waiter) wake_closed(lc, "closed"); /* a task in recv() (closed from another task) ends its wait now */
    release_self(lc);
}

static void on_cancel(vx_task *t, void *op) {
    (void)t;
    lconn *lc = op;
    int connecting = lc->state == ST_CONNECTING;
    lc->waiter = NULL;
    if (connecting) close_conn(lc, 1001);
}

static int l_connect(lua_State *L) {
    vx_runtime *rt = vx_rt(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_newtable(L); /* 2: keeps header strings alive */
    vx_ws_opts o;
    memset(&o, 0, sizeof o);
    const char *headers[MAX_HEADERS + 1];
    lua_getfield(L, 1, "url");
    o.url = lua_tostring(L, -1);
    if (!o.url) return luaL_error(L, "ws.connect: 'url' (a string) is required");
    lua_getfield(L, 1, "insecure");
    o.insecure = lua_toboolean(L, -1);
    vx_opt_headers(L, 1, 2, headers, MAX_HEADERS, "ws.connect");
    o.headers = headers;
    o.ping_s = (unsigned)vx_opt_long(L, 1, "ping_s", 0);
    o.hangup_s = (unsigned)vx_opt_long(L, 1, "hangup_s", 0);
    o.max_message = (size_t)vx_opt_long(L, 1, "max_message", 0);
    long max_queue = vx_opt_long(L, 1, "max_queue", 8L << 20);
    if (rt->shutting_down) {
        lua_pushnil(L);
        lua_pushliteral(L, "ws.connect: the runtime is shutting down");
        lua_pushliteral(L, "shutdown");
        return 3;
    }
    vx_task *t = vx_task_prepare_wait(L, "ws.connect");
    char err[300];
    if (!rt->ws && !(rt->ws = vx_ws_new(rt, err, sizeof err))) {
        lua_pushnil(L);
        lua_pushfstring(L, "ws.connect: %s", err);
        lua_pushliteral(L, "invalid");
        return 3;
    }
    lua_getfield(L, 1, "sink");
    vx_md_sink *sink = lua_isnil(L, -1) ? NULL : vx_md_sink_check(L, -1);
    int sink_idx = lua_gettop(L);
    lconn *lc = lua_newuserdata(L, sizeof *lc);
    memset(lc, 0, sizeof *lc);
    lc->self_ref = LUA_NOREF;
    lc->sink_ref = LUA_NOREF;
    lc->L = rt->L;
    lc->high = max_queue > 0 ? (size_t)max_queue : (8u << 20);
    lc->low = lc->high / 4;
    luaL_getmetatable(L, CONN_MT);
    lua_setmetatable(L, -2);
    lc->c = vx_ws_connect(rt->ws, &o, &events, lc, err, sizeof err);
    if (!lc->c) {
        lc->state = ST_CLOSED;
        lua_pushnil(L);
        lua_pushfstring(L, "ws.connect %s: %s", o.url, err);
        lua_pushliteral(L, "connect");
        return 3;
    }
    lua_pushvalue(L, -1);
    lc->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (sink) {
        lua_pushvalue(L, sink_idx);
        lc->sink_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        lc->sink = sink;
    }
    lc->waiter = t;
    return vx_task_wait(L, t, VX_WAIT_IO, on_cancel, lc);
}

/* Push the oldest queued message and drop it from the queue. */
static void pop_message(lua_State *L, lconn *lc) {
    uint32_t len;
    memcpy(&len, lc->q.p + lc->q_head, sizeof len);
    lua_pushlstring(L, lc->q.p + lc->q_head + sizeof len, len);
    lc->q_head += sizeof len + len;
    if (--lc->q_count == 0) {
        lc->q.len = lc->q_head = 0;
    } else if (lc->q_head > lc->q.len / 2 && lc->q_head > 65536) {
        memmove(lc->q.p, lc->q.p + lc->q_head, lc->q.len - lc->q_head);
        lc->q.len -= lc->q_head;
        lc->q_head = 0;
    }
    if (lc->paused && queued_bytes(lc) < lc->low && lc->c) {
        lc->paused = 0;
        vx_ws_read_enable(lc->c, 1);
    }
}

static void recv_cancel(vx_task *t, void *op) {
    (void)t;
    ((lconn *)op)->waiter = NULL;
}

static int l_recv(lua_State *L) {
    lconn *lc = luaL_checkudata(L, 1, CONN_MT);
    if (lc->q_count) {
        pop_message(L, lc);
        return 1;
    }
    if (lc->state != ST_OPEN) return push_close_info(L, lc, "closed");
    if (lc->waiter) return luaL_error(L, "ws: another task is already waiting on this connection");
    vx_task *t = vx_task_prepare_wait(L, "ws.recv");
    lc->waiter = t;
    return vx_task_wait(L, t, VX_WAIT_SOFT, recv_cancel, lc);
}

static int l_poll(lua_State *L) {
    lconn *lc = luaL_checkudata(L, 1, CONN_MT);
    if (!lc->q_count) return 0;
    pop_message(L, lc);
    return 1;
}

static int l_send(lua_State *L) {
    lconn *lc = luaL_checkudata(L, 1, CONN_MT);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    if (!lc->c || lc->state == ST_CLOSED) {
        lua_pushnil(L);
        lua_pushfstring(L, "ws.send: connection is closed (%s)", lc->close_reason);
        return 2;
    }
    if (vx_ws_send(lc->c, p, n, lua_toboolean(L, 3)) != 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "ws.send: could not queue the message");
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_close(lua_State *L) {
    lconn *lc = luaL_checkudata(L, 1, CONN_MT);
    close_conn(lc, (int)luaL_optinteger(L, 2, 1000));
    return 0;
}

static int l_status(lua_State *L) {
    lconn *lc = luaL_checkudata(L, 1, CONN_MT);
    static const char *names[] = {"connecting", "open", "closed"};
    lua_pushstring(L, names[lc->state]);
    return 1;
}

static int l_stats(lua_State *L) {
    lconn *lc = luaL_checkudata(L, 1, CONN_MT);
    lua_createtable(L, 0, 6);
    lua_pushnumber(L, lc->received);
    lua_setfield(L, -2, "received");
    lua_pushnumber(L, (double)lc->q_count);
    lua_setfield(L, -2, "queued");
    lua_pushnumber(L, (double)queued_bytes(lc));
    lua_setfield(L, -2, "queued_bytes");
    lua_pushboolean(L, lc->paused);
    lua_setfield(L, -2, "paused");
    lua_pushnumber(L, lc->sunk);
    lua_setfield(L, -2, "sunk");
    lua_pushnumber(L, lc->c ? (double)vx_ws_pending(lc->c) : 0);
    lua_setfield(L, -2, "pending_send");
    return 1;
}

static int l_gc(lua_State *L) {
    lconn *lc = luaL_checkudata(L, 1, CONN_MT);
    if (lc->c) vx_ws_close(lc->c, 1001, NULL);
    lc->c = NULL;
    vx_buf_free(&lc->q);
    return 0;
}

static int l_open_count(lua_State *L) {
    lua_pushnumber(L, (double)vx_ws_open_count(vx_rt(L)->ws));
    return 1;
}

int vx_open_ws(lua_State *L) {
    static const luaL_Reg methods[] = {{"recv", l_recv},     {"poll", l_poll},   {"send", l_send},
                                       {"close", l_close},   {"status", l_status}, {"stats", l_stats},
                                       {NULL, NULL}};
    static const luaL_Reg fns[] = {{"connect", l_connect}, {"open_count", l_open_count}, {NULL, NULL}};
    vx_new_class(L, CONN_MT, methods, l_gc);
    vx_new_module(L, fns);
    lua_insert(L, -2);
    lua_setfield(L, -2, "methods"); /* the Lua wrapper puts task.await around recv */
    return 1;
}
