/*
 * unit.h — shared helpers for the C unit tests (cmocka).
 */
#ifndef VX_UNIT_H
#define VX_UNIT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <lauxlib.h>

#include "vx.h"

/* A runtime rooted at the source tree (tests run from the repository). */
static inline vx_runtime *unit_runtime(void) {
    char err[256];
    const char *home = getenv("VIBEX_HOME");
    vx_runtime *rt = vx_runtime_new(home ? home : ".", err, sizeof err);
    if (!rt) fail_msg("vx_runtime_new: %s", err);
    return rt;
}

#include "task.h"

/* Run a Lua chunk as a task until the loop has no work left; copies the
 * global `result` (as a string, "(nil)" if unset) into out. */
static inline void unit_run_lua(vx_runtime *rt, const char *code, char *out, size_t outlen) {
    lua_State *L = rt->L;
    if (luaL_loadstring(L, code) != 0) fail_msg("compile: %s", lua_tostring(L, -1));
    vx_task_spawn(rt->sched, L, 0, "unit");
    lua_pop(L, 1);
    vx_runtime_run(rt);
    lua_getglobal(L, "result");
    const char *s = lua_tostring(L, -1);
    snprintf(out, outlen, "%s", s ? s : "(nil)");
    lua_pop(L, 1);
}

#endif
