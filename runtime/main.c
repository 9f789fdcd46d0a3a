/*
 * main.c — the vibex command.
 *
 * C does only what Lua cannot: find the installation, create the runtime,
 * and run the loop. The command line itself is parsed by stdlib/vibex/cli.lua,
 * which runs as the first task, so every subcommand can use every primitive
 * (and later issues add subcommands in Lua).
 */

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>

#include "task.h"
#include "vx.h"

static int has_stdlib(const char *home) {
    char path[PATH_MAX];
    struct stat st;
    if (snprintf(path, sizeof path, "%s/stdlib/vibex/cli.lua", home) >= (int)sizeof path) return 0;
    return stat(path, &st) == 0;
}

/* VIBEX_HOME, else the directory holding the binary, else ../share/vibex. */
static int find_home(char *out, size_t len) {
    const char *env = getenv("VIBEX_HOME");
    if (env && *env) {
        if (!realpath(env, out) || !has_stdlib(out)) {
            fprintf(stderr, "vibex: VIBEX_HOME=%s has no stdlib/vibex/cli.lua\n", env);
            return -1;
        }
        return 0;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        fprintf(stderr, "vibex: cannot locate the binary; set VIBEX_HOME\n");
        return -1;
    }
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    snprintf(out, len, "%s", exe);
    if (has_stdlib(out)) return 0;
    char real[PATH_MAX];
    if (snprintf(out, len, "%.*s/../share/vibex", (int)(len - 20), exe) < (int)len &&
        realpath(out, real) && has_stdlib(real)) {
        snprintf(out, len, "%s", real);
        return 0;
    }
    fprintf(stderr, "vibex: cannot find the standard library next to %s; set VIBEX_HOME\n", exe);
    return -1;
}

static void set_arg(lua_State *L, int argc, char **argv) {
    lua_createtable(L, argc, 1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i);
    }
    lua_setglobal(L, "arg");
}

int main(int argc, char **argv) {
    /* everything vibex creates (data, logs, state, journals, the database
     * directory) is private to the user running it: 0700 / 0600 */
    umask(077);
    char home[PATH_MAX];
    if (find_home(home, sizeof home) != 0) return 2;
    char err[256];
    vx_runtime *rt = vx_runtime_new(home, err, sizeof err);
    if (!rt) {
        fprintf(stderr, "vibex: %s\n", err);
        return 1;
    }
    lua_State *L = rt->L;
    set_arg(L, argc, argv);
    if (luaL_loadstring(L, "return require('vibex.cli').main(...)") != 0) {
        fprintf(stderr, "vibex: %s\n", lua_tostring(L, -1));
        vx_runtime_free(rt);
        return 1;
    }
    for (int i = 1; i < argc; i++) lua_pushstring(L, argv[i]);
    vx_task *main_task = vx_task_spawn(rt->sched, L, argc - 1, "main");
    int ref = luaL_ref(L, LUA_REGISTRYINDEX); /* keep the handle to read its outcome */
    int code = vx_runtime_run(rt);
    const char *status = vx_task_status(main_task);
    if (strcmp(status, "done") != 0 && code == 0) {
        if (strcmp(status, "failed") != 0 && strcmp(status, "cancelled") != 0)
            fprintf(stderr, "vibex: the loop ran out of work while the main task was still %s\n",
                    status);
        code = strcmp(status, "cancelled") == 0 && rt->shutting_down ? 0 : 1;
    }
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    vx_runtime_free(rt);
    return code;
}
