/*
 * repl_lua.c — require "vibex.core.repl": reading REPL input without blocking
 * the loop.
 *
 * On a terminal, libedit's callback interface does the line editing: a
 * uv_poll on stdin feeds it one character at a time, and a finished line
 * wakes the task that asked for it. Background tasks, timers and requests
 * keep running while the user types. Without a terminal (input piped from
 * a file or another program) stdin is read through the loop's file API and
 * split into lines, and no prompt is drawn.
 *
 * libedit keeps its state in globals, so the terminal is a process-wide
 * resource: one REPL owns it at a time (`active` below, checked on entry).
 * The completer is a Lua function called from libedit's completion hook; it
 * must not yield.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <editline/readline.h>

#include "buf.h"
#include "task.h"
#include "vx_lua.h"

typedef struct repl {
    vx_runtime *rt;
    lua_State *L;
    int tty;
    uv_poll_t poll;
    int poll_open;
    vx_task *waiter;
    int completer_ref;
    /* non-terminal input: a pipe is read as a stream (closable at exit),
     * a regular file through the loop's file API */
    uv_pipe_t pipe;
    int pipe_open;
    uv_fs_t req;
    int reading;
    int eof;
    char chunk[16384];
    vx_buf in;
} repl;

static repl *active; /* the terminal's owner: libedit has no user-data pointer */

static void wake_with_line(repl *r, const char *line, size_t len) {
    vx_task *t = r->waiter;
    if (!t) return;
    r->waiter = NULL;
    lua_State *co = vx_task_wake_begin(t);
    if (line) lua_pushlstring(co, line, len);
    else lua_pushnil(co);
    vx_task_wake_end(t, 1);
}

/* ---- terminal ----------------------------------------------------------- */

static void on_line(char *line) {
    repl *r = active;
    rl_callback_handler_remove();
    if (r->poll_open) uv_poll_stop(&r->poll);
    if (!line) {
        r->eof = 1;
        fputc('\n', stdout);
        fflush(stdout);
    }
    wake_with_line(r, line, line ? strlen(line) : 0);
    free(line);
}

static void on_stdin(uv_poll_t *p, int status, int events) {
    (void)p;
    (void)events;
    if (status < 0) {
        on_line(NULL);
        return;
    }
    rl_callback_read_char();
}

static char **completion_list;
static int completion_index;

static char *next_completion(const char *text, int state) {
    (void)text;
    if (state == 0) completion_index = 0;
    if (!completion_list || !completion_list[completion_index]) return NULL;
    return strdup(completion_list[completion_index++]);
}

static void free_completion_list(void) {
    if (!completion_list) return;
    for (char **c = completion_list; *c; c++) free(*c);
    free(completion_list);
    completion_list = NULL;
}

static char **complete(const char *text, int start, int end) {
    (void)start;
    repl *r = active;
    rl_attempted_completion_over = 1; /* never fall back to file names */
    if (!r || r->completer_ref == LUA_NOREF) return NULL;
    lua_State *L = r->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->completer_ref);
    lua_pushstring(L, text);
    lua_pushlstring(L, rl_line_buffer, (size_t)end);
    if (lua_pcall(L, 2, 1, 0) != 0 || !lua_istable(L, -1)) {
        lua_pop(L, 1);
        return NULL;
    }
    int n = (int)lua_objlen(L, -1);
    free_completion_list();
    completion_list = calloc((size_t)n + 1, sizeof(char *));
    int k = 0;
    for (int i = 1; completion_list && i <= n; i++) {
        lua_rawgeti(L, -1, i);
        const char *s = lua_tostring(L, -1);
        if (s && (completion_list[k] = strdup(s))) k++;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (k == 0) return NULL;
    rl_completion_append_character = '\0';
    return rl_completion_matches(text, next_completion);
}

/* ---- piped input -------------------------------------------------------- */

/* Push the next buffered line (or nil at end of input) onto L; 0 if there
 * is no complete line yet. */
static int take_line(repl *r, lua_State *L) {
    char *p = r->in.p;
    char *nl = p ? memchr(p, '\n', r->in.len) : NULL;
    if (nl) {
        size_t n = (size_t)(nl - p);
        lua_pushlstring(L, p, n > 0 && p[n - 1] == '\r' ? n - 1 : n);
        memmove(p, nl + 1, r->in.len - n - 1);
        r->in.len -= n + 1;
        return 1;
    }
    if (!r->eof) return 0;
    if (r->in.len) lua_pushlstring(L, p, r->in.len);
    else lua_pushnil(L);
    r->in.len = 0;
    return 1;
}

static int serve_buffered(repl *r) {
    vx_task *t = r->waiter;
    if (!t) return 1;
    int has_line = (r->in.p && memchr(r->in.p, '\n', r->in.len)) || r->eof;
    if (!has_line) return 0;
    r->waiter = NULL;
    lua_State *co = vx_task_wake_begin(t);
    vx_task_wake_end(t, take_line(r, co));
    return 1;
}

static void start_read(repl *r);

static void on_read(uv_fs_t *req) {
    repl *r = req->data;
    ssize_t n = req->result;
    uv_fs_req_cleanup(req);
    r->reading = 0;
    if (n <= 0) r->eof = 1;
    else vx_buf_add(&r->in, r->chunk, (size_t)n);
    if (!serve_buffered(r)) start_read(r);
}

static void pipe_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    repl *r = h->data;
    *buf = uv_buf_init(r->chunk, sizeof r->chunk);
}

static void pipe_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
    repl *r = s->data;
    if (n > 0) vx_buf_add(&r->in, buf->base, (size_t)n);
    if (n < 0) {
        r->eof = 1;
        uv_read_stop(s);
    }
    if (serve_buffered(r)) uv_read_stop(s); /* read ahead only when asked */
}

static void start_read(repl *r) {
    if (r->pipe_open) {
        if (!r->eof) uv_read_start((uv_stream_t *)&r->pipe, pipe_alloc, pipe_read);
        return;
    }
    if (r->reading || r->eof) return;
    uv_buf_t b = uv_buf_init(r->chunk, sizeof r->chunk);
    r->req.data = r;
    if (uv_fs_read(&r->rt->loop, &r->req, 0, &b, 1, -1, on_read) == 0) r->reading = 1;
    else r->eof = 1;
}

/* ---- Lua ---------------------------------------------------------------- */

static repl *get_repl(lua_State *L) {
    repl *r = lua_touserdata(L, lua_upvalueindex(1));
    return r;
}

static void cancel_read(vx_task *t, void *op) {
    (void)t;
    repl *r = op;
    r->waiter = NULL;
    if (r->tty) {
        rl_callback_handler_remove();
        if (r->poll_open) uv_poll_stop(&r->poll);
    }
}

static int l_readline(lua_State *L) {
    repl *r = get_repl(L);
    const char *prompt = luaL_optstring(L, 1, "> ");
    if (active && active != r) return luaL_error(L, "repl: another REPL owns the terminal");
    if (r->waiter) return luaL_error(L, "repl: a task is already reading input");
    active = r;
    if (r->tty && r->eof) {
        lua_pushnil(L);
        return 1;
    }
    if (!r->tty && take_line(r, L)) return 1;
    vx_task *t = vx_task_prepare_wait(L, "repl.readline");
    r->waiter = t;
    if (r->tty) {
        if (!r->poll_open) {
            if (uv_poll_init(&r->rt->loop, &r->poll, 0) != 0) {
                r->waiter = NULL;
                return luaL_error(L, "repl: cannot watch the terminal");
            }
            r->poll.data = r;
            r->poll_open = 1;
        }
        rl_callback_handler_install(prompt, on_line);
        uv_poll_start(&r->poll, UV_READABLE, on_stdin);
    } else {
        start_read(r);
    }
    return vx_task_wait(L, t, VX_WAIT_SOFT, cancel_read, r);
}

static int l_add_history(lua_State *L) {
    add_history(luaL_checkstring(L, 1));
    return 0;
}

static int l_load_history(lua_State *L) {
    read_history(luaL_checkstring(L, 1)); /* a missing file is a first run */
    return 0;
}

static int l_save_history(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    stifle_history((int)luaL_optinteger(L, 2, 1000));
    lua_pushboolean(L, write_history(path) == 0);
    return 1;
}

static int l_set_completer(lua_State *L) {
    repl *r = get_repl(L);
    luaL_checktype(L, 1, LUA_TFUNCTION);
    luaL_unref(L, LUA_REGISTRYINDEX, r->completer_ref);
    lua_pushvalue(L, 1);
    r->completer_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

static int l_interactive(lua_State *L) {
    lua_pushboolean(L, get_repl(L)->tty);
    return 1;
}

/* Ctrl-C at the prompt: drop the line and draw a fresh prompt. */
static int l_interrupt(lua_State *L) {
    repl *r = get_repl(L);
    if (r->tty && r->waiter) {
        fputs("^C\n", stdout);
        fflush(stdout);
        wake_with_line(r, "", 0);
        rl_callback_handler_remove();
        uv_poll_stop(&r->poll);
    }
    return 0;
}

static void handle_closed(uv_handle_t *h) {
    repl *r = h->data;
    if (--r->poll_open > 0) return;
    vx_buf_free(&r->in);
    free(r);
}

static int l_gc(lua_State *L) {
    repl **box = luaL_checkudata(L, 1, "vibex.repl");
    repl *r = *box;
    if (!r) return 0;
    *box = NULL;
    if (active == r) {
        if (r->tty) rl_callback_handler_remove();
        active = NULL;
    }
    free_completion_list();
    if (r->reading) { /* a file read in the thread pool still points at r */
        return 0;
    }
    if (r->poll_open || r->pipe_open) {
        int n = r->poll_open + r->pipe_open;
        if (r->poll_open) uv_close((uv_handle_t *)&r->poll, handle_closed);
        if (r->pipe_open) uv_close((uv_handle_t *)&r->pipe, handle_closed);
        r->poll_open = n;
    } else {
        vx_buf_free(&r->in);
        free(r);
    }
    return 0;
}

int vx_open_repl(lua_State *L) {
    repl *r = calloc(1, sizeof *r);
    if (!r) return luaL_error(L, "repl: out of memory");
    r->rt = vx_rt(L);
    r->L = r->rt->L;
    r->tty = isatty(0) && isatty(1);
    r->completer_ref = LUA_NOREF;
    if (r->tty) {
        rl_readline_name = "vibex";
        rl_attempted_completion_function = complete;
        rl_basic_word_break_characters = " \t\n\"\\'`@$><=;|&{(,+-*/%^~[]#";
        using_history();
    } else if (uv_guess_handle(0) == UV_NAMED_PIPE &&
               uv_pipe_init(&r->rt->loop, &r->pipe, 0) == 0) {
        r->pipe.data = r;
        if (uv_pipe_open(&r->pipe, 0) == 0) r->pipe_open = 1;
        else uv_close((uv_handle_t *)&r->pipe, NULL);
    }
    static const luaL_Reg fns[] = {{"readline", l_readline},       {"add_history", l_add_history},
                                   {"load_history", l_load_history}, {"save_history", l_save_history},
                                   {"set_completer", l_set_completer}, {"interactive", l_interactive},
                                   {"interrupt", l_interrupt},     {NULL, NULL}};
    lua_newtable(L);
    /* the table owns the repl through a userdata with __gc */
    repl **box = lua_newuserdata(L, sizeof *box);
    *box = r;
    luaL_newmetatable(L, "vibex.repl");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_setfield(L, -2, "_owner");
    for (const luaL_Reg *f = fns; f->name; f++) {
        lua_pushlightuserdata(L, r);
        lua_pushcclosure(L, f->func, 1);
        lua_setfield(L, -2, f->name);
    }
    return 1;
}
