/*
 * process_lua.c — require "vibex.core.process": child processes on the loop.
 *
 * Used by the test suite and the benchmarks to run fake servers and a
 * private PostgreSQL, and by `vibex` subcommands that drive tools
 * (initdb, pg_ctl). Not reachable from sandboxed strategy scripts.
 *
 * spawn{file, args, env, cwd, stdout, stderr} → handle; handle:read_line(),
 * :read_all(stream), :wait(), :kill(sig), :pid(). Each waiting method
 * yields the calling task. The C side (struct proc) is freed only when both
 * libuv has closed its handles and Lua has collected the handle.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "task.h"
#include "vx_lua.h"

#define PROC_MT "vibex.process"
#define MAX_ARGS 256
#define MAX_ENV 512

enum { S_OUT = 0, S_ERR = 1 };
enum { W_NONE = 0, W_LINE, W_ALL };

typedef struct stream {
    uv_pipe_t pipe;
    int used;
    int eof;
    vx_buf data;
    size_t pos;       /* consumed by read_line */
    vx_task *waiter;
    int wait_mode;
} stream;

typedef struct proc {
    uv_process_t handle;
    stream s[2];
    int open_handles;
    int exited;
    int64_t exit_status;
    int term_signal;
    vx_task *exit_waiter;
    int lua_alive;     /* the Lua handle still exists */
    int self_ref;      /* anchors the Lua handle until the child is reaped */
    lua_State *L;
} proc;

typedef struct lproc {
    proc *p;
} lproc;

static void maybe_free(proc *p) {
    if (p->open_handles == 0 && !p->lua_alive) {
        vx_buf_free(&p->s[0].data);
        vx_buf_free(&p->s[1].data);
        free(p);
    }
}

static void on_handle_closed(uv_handle_t *h) {
    proc *p = h->data;
    p->open_handles--;
    maybe_free(p);
}

/* If what `mode` asks for is buffered (or the stream ended), push it onto L
 * and return how many values were pushed; otherwise return 0. */
static int take(stream *st, int mode, lua_State *L) {
    const char *base = st->data.p ? st->data.p + st->pos : NULL;
    size_t avail = st->data.len - st->pos;
    if (mode == W_ALL) {
        if (!st->eof) return 0;
        lua_pushlstring(L, base ? base : "", avail);
        st->pos = st->data.len;
        return 1;
    }
    const char *nl = base ? memchr(base, '\n', avail) : NULL;
    if (nl) {
        size_t n = (size_t)(nl - base);
        lua_pushlstring(L, base, n > 0 && base[n - 1] == '\r' ? n - 1 : n);
        st->pos += n + 1;
        return 1;
    }
    if (!st->eof) return 0;
    if (avail > 0) {
        lua_pushlstring(L, base, avail);
        st->pos += avail;
        return 1;
    }
    lua_pushnil(L);
    lua_pushliteral(L, "eof");
    return 2;
}

static int ready(const stream *st, int mode) {
    if (st->eof) return 1;
    if (mode == W_ALL || !st->data.p) return 0;
    return memchr(st->data.p + st->pos, '\n', st->data.len - st->pos) != NULL;
}

/* Wake the stream's waiter if what it waits for has arrived. */
static void serve_stream(proc *p, int which) {
    stream *st = &p->s[which];
    vx_task *t = st->waiter;
    if (!t || !ready(st, st->wait_mode)) return;
    st->waiter = NULL;
    lua_State *co = vx_task_wake_begin(t);
    vx_task_wake_end(t, take(st, st->wait_mode, co));
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)h;
    (void)suggested;
    const size_t chunk = 65536;
    buf->base = malloc(chunk);
    buf->len = buf->base ? chunk : 0;
}

static stream *stream_of(proc *p, uv_stream_t *s) {
    return (uv_pipe_t *)s == &p->s[0].pipe ? &p->s[0] : &p->s[1];
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
    proc *p = s->data;
    stream *st = stream_of(p, s);
    int which = st == &p->s[0] ? S_OUT : S_ERR;
    if (n > 0) vx_buf_add(&st->data, buf->base, (size_t)n);
    free(buf->base);
    if (n < 0) {
        st->eof = 1;
        uv_close((uv_handle_t *)s, on_handle_closed);
    }
    serve_stream(p, which);
}

static void exit_cb(uv_process_t *h, int64_t status, int sig) {
    proc *p = h->data;
    p->exited = 1;
    p->exit_status = status;
    p->term_signal = sig;
    uv_close((uv_handle_t *)h, on_handle_closed);
    if (p->exit_waiter) {
        vx_task *t = p->exit_waiter;
        p->exit_waiter = NULL;
        lua_State *co = vx_task_wake_begin(t);
        lua_pushinteger(co, (lua_Integer)status);
        lua_pushinteger(co, sig);
        vx_task_wake_end(t, 2);
    }
    luaL_unref(p->L, LUA_REGISTRYINDEX, p->self_ref);
    p->self_ref = LUA_NOREF;
}

static int collect_strings(lua_State *L, int idx, const char *field, char **out, int max, int first) {
    int n = first;
    lua_getfield(L, idx, field);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return n;
    }
    luaL_checktype(L, -1, LUA_TTABLE);
    int len = (int)lua_objlen(L, -1);
    for (int i = 1; i <= len && n < max; i++) {
        lua_rawgeti(L, -1, i);
        if (!lua_isstring(L, -1)) luaL_error(L, "process.spawn: %s[%d] must be a string", field, i);
        out[n++] = (char *)lua_tostring(L, -1);
        lua_pop(L, 1); /* strings stay alive in the options table */
    }
    lua_pop(L, 1);
    return n;
}

/* env = {NAME = value}: added to (or replacing in) the inherited environment.
 * The combined strings live in a table at `keep`. */
static int build_env(lua_State *L, int keep, char **env) {
    extern char **environ;
    int n = 0;
    lua_getfield(L, 1, "env");
    int has = lua_istable(L, -1);
    for (char **e = environ; *e && n < MAX_ENV - 64; e++) {
        const char *eq = strchr(*e, '=');
        if (has && eq) {
            lua_pushlstring(L, *e, (size_t)(eq - *e));
            lua_rawget(L, -2);
            int overridden = !lua_isnil(L, -1);
            lua_pop(L, 1);
            if (overridden) continue;
        }
        env[n++] = *e;
    }
    if (has) {
        lua_pushnil(L);
        while (lua_next(L, -2) && n < MAX_ENV - 1) {
            lua_pushvalue(L, -2);
            lua_pushliteral(L, "=");
            lua_pushvalue(L, -3);
            lua_concat(L, 3);
            env[n++] = (char *)lua_tostring(L, -1);
            lua_rawseti(L, keep, n);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    env[n] = NULL;
    return n;
}

static int stdio_mode(lua_State *L, const char *field, const char *dflt) {
    lua_getfield(L, 1, field);
    const char *m = lua_isnil(L, -1) ? dflt : lua_tostring(L, -1);
    lua_pop(L, 1);
    if (!m) m = dflt;
    if (!strcmp(m, "pipe")) return 1;
    if (!strcmp(m, "inherit")) return 2;
    if (!strcmp(m, "ignore")) return 0;
    return luaL_error(L, "process.spawn: %s must be pipe, inherit or ignore", field);
}

static void setup_stdio(proc *p, uv_loop_t *loop, uv_stdio_container_t *io, int fd, int mode) {
    if (mode == 1) {
        stream *st = &p->s[fd - 1];
        uv_pipe_init(loop, &st->pipe, 0);
        st->pipe.data = p;
        st->used = 1;
        io->flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
        io->data.stream = (uv_stream_t *)&st->pipe;
    } else if (mode == 2) {
        io->flags = UV_INHERIT_FD;
        io->data.fd = fd;
    } else {
        io->flags = UV_IGNORE;
    }
}

static int l_spawn(lua_State *L) {
    vx_runtime *rt = vx_rt(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_newtable(L); /* 2: keeps env strings alive */
    lua_getfield(L, 1, "file");
    const char *file = lua_tostring(L, -1);
    if (!file) return luaL_error(L, "process.spawn: 'file' (the program) is required");
    char *args[MAX_ARGS + 2];
    args[0] = (char *)file;
    int nargs = collect_strings(L, 1, "args", args, MAX_ARGS, 1);
    args[nargs] = NULL;
    char *env[MAX_ENV];
    build_env(L, 2, env);
    lua_getfield(L, 1, "cwd");
    const char *cwd = lua_tostring(L, -1);
    int out_mode = stdio_mode(L, "stdout", "pipe"), err_mode = stdio_mode(L, "stderr", "inherit");

    proc *p = calloc(1, sizeof *p);
    if (!p) return luaL_error(L, "process.spawn: out of memory");
    p->L = rt->L;
    p->self_ref = LUA_NOREF;
    uv_stdio_container_t io[3];
    io[0].flags = UV_IGNORE;
    setup_stdio(p, &rt->loop, &io[1], 1, out_mode);
    setup_stdio(p, &rt->loop, &io[2], 2, err_mode);
    uv_process_options_t o;
    memset(&o, 0, sizeof o);
    o.file = file;
    o.args = args;
    o.env = env;
    o.cwd = cwd;
    o.stdio = io;
    o.stdio_count = 3;
    o.exit_cb = exit_cb;
    p->handle.data = p;
    int rc = uv_spawn(&rt->loop, &p->handle, &o);
    p->open_handles = 1 + p->s[0].used + p->s[1].used;
    for (int i = 0; i < 2; i++) {
        if (!p->s[i].used) continue;
        if (rc == 0) uv_read_start((uv_stream_t *)&p->s[i].pipe, alloc_cb, read_cb);
        else uv_close((uv_handle_t *)&p->s[i].pipe, on_handle_closed);
    }
    if (rc != 0) {
        uv_close((uv_handle_t *)&p->handle, on_handle_closed);
        lua_pushnil(L);
        lua_pushfstring(L, "process.spawn: cannot run %s: %s", file, uv_strerror(rc));
        return 2;
    }
    lproc *lp = lua_newuserdata(L, sizeof *lp);
    lp->p = p;
    p->lua_alive = 1;
    luaL_getmetatable(L, PROC_MT);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    p->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 1;
}

/* A handle already finalized (reachable again through a weak table while
 * the collector runs) has no proc behind it: an error, not a crash. */
static proc *check_proc(lua_State *L) {
    proc *p = ((lproc *)luaL_checkudata(L, 1, PROC_MT))->p;
    if (!p) luaL_error(L, "process: handle already collected");
    return p;
}

static void stream_cancel(vx_task *t, void *op) {
    stream *st = op;
    if (st->waiter == t) st->waiter = NULL;
}

static int read_common(lua_State *L, int mode) {
    proc *p = check_proc(L);
    const char *which = luaL_optstring(L, 2, "stdout");
    int idx = !strcmp(which, "stderr") ? S_ERR : S_OUT;
    stream *st = &p->s[idx];
    if (!st->used) return luaL_error(L, "process: %s is not a pipe (spawn with %s = 'pipe')", which, which);
    if (st->waiter) return luaL_error(L, "process: another task is already reading %s", which);
    if (ready(st, mode)) return take(st, mode, L);
    vx_task *t = vx_task_prepare_wait(L, "process.read");
    st->waiter = t;
    st->wait_mode = mode;
    return vx_task_wait(L, t, VX_WAIT_IO, stream_cancel, st);
}

static int l_read_line(lua_State *L) { return read_common(L, W_LINE); }
static int l_read_all(lua_State *L) { return read_common(L, W_ALL); }

static void exit_cancel(vx_task *t, void *op) {
    proc *p = op;
    if (p->exit_waiter == t) p->exit_waiter = NULL;
}

static int l_wait(lua_State *L) {
    proc *p = check_proc(L);
    if (p->exited) {
        lua_pushinteger(L, (lua_Integer)p->exit_status);
        lua_pushinteger(L, p->term_signal);
        return 2;
    }
    if (p->exit_waiter) return luaL_error(L, "process: another task is already waiting for it");
    vx_task *t = vx_task_prepare_wait(L, "process.wait");
    p->exit_waiter = t;
    return vx_task_wait(L, t, VX_WAIT_IO, exit_cancel, p);
}

static int signal_number(lua_State *L, int idx) {
    if (lua_isnoneornil(L, idx)) return SIGTERM;
    if (lua_type(L, idx) == LUA_TNUMBER) return (int)lua_tointeger(L, idx);
    const char *s = luaL_checkstring(L, idx);
    if (!strncmp(s, "SIG", 3)) s += 3;
    static const struct { const char *n; int v; } sigs[] = {
        {"TERM", SIGTERM}, {"KILL", SIGKILL}, {"INT", SIGINT},
        {"HUP", SIGHUP},   {"STOP", SIGSTOP}, {"CONT", SIGCONT}, {"USR1", SIGUSR1}};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        if (!strcmp(s, sigs[i].n)) return sigs[i].v;
    return luaL_error(L, "process.kill: unknown signal '%s'", s);
}

static int l_kill(lua_State *L) {
    proc *p = check_proc(L);
    int sig = signal_number(L, 2);
    if (p->exited) {
        lua_pushboolean(L, 0);
        return 1;
    }
    int rc = uv_process_kill(&p->handle, sig);
    lua_pushboolean(L, rc == 0);
    return 1;
}

static int l_pid(lua_State *L) {
    lua_pushinteger(L, check_proc(L)->handle.pid);
    return 1;
}

static int l_exited(lua_State *L) {
    lua_pushboolean(L, check_proc(L)->exited);
    return 1;
}

static int l_gc(lua_State *L) {
    lproc *lp = luaL_checkudata(L, 1, PROC_MT);
    proc *p = lp->p;
    if (!p) return 0;
    lp->p = NULL;
    p->lua_alive = 0;
    maybe_free(p);
    return 0;
}

int vx_open_process(lua_State *L) {
    static const luaL_Reg methods[] = {{"read_line", l_read_line}, {"read_all", l_read_all},
                                       {"wait", l_wait},           {"kill", l_kill},
                                       {"pid", l_pid},             {"exited", l_exited},
                                       {NULL, NULL}};
    static const luaL_Reg fns[] = {{"spawn", l_spawn}, {NULL, NULL}};
    vx_new_class(L, PROC_MT, methods, l_gc);
    lua_pop(L, 1);
    vx_new_module(L, fns);
    return 1;
}
