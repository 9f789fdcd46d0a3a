/*
 * budget.h — time and memory budgets for untrusted Lua (strategy scripts,
 * configs), enforced from C so the code under budget cannot opt out.
 *
 * A budget is entered around a call (vx_budget_enter) and left after it
 * (vx_budget_leave). While one is entered:
 *  - the state's allocator refuses growth past the call's ceiling;
 *  - the runtime's watchdog thread polls the frame (vx_budget_poll): once
 *    the wall-clock deadline has passed or a SIGINT/SIGTERM arrived since
 *    the call began, it arms an every-instruction hook that raises.
 * The hook is armed only then, as LuaJIT's own interpreter does from its
 * SIGINT handler: an armed hook stops the JIT from recording and costs
 * every instruction, so a call that keeps its budget pays nothing. Once a
 * budget trips it stays tripped until it is left: the hook raises again
 * at every instruction, so a pcall in the script cannot swallow it (the
 * sandbox's pcall also re-raises; see vibex.sandbox). The hook does not
 * fire in JIT-compiled traces, so untrusted functions must be compiled with
 * the JIT off for them (jit.off(fn, true)); the sandbox does that.
 *
 * One vx_budget per Lua state; it is the allocator's userdata, which is how
 * the hook finds it without any global.
 */
#ifndef VX_BUDGET_H
#define VX_BUDGET_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>
#include <uv.h>

enum vx_budget_trip {
    VX_TRIP_NONE = 0,
    VX_TRIP_TIME,   /* the wall-clock deadline passed */
    VX_TRIP_MEMORY, /* an allocation would cross the ceiling */
    VX_TRIP_SIGNAL, /* SIGINT/SIGTERM arrived: stop now, shut down in order */
};

#define VX_BUDGET_MAX_DEPTH 8

typedef struct vx_budget_frame {
    uint64_t deadline_ns;  /* uv_hrtime() clock */
    int64_t mem_ceiling;   /* absolute bytes in use allowed */
    uint64_t signals_at;   /* signal count when the frame began */
    int trip;              /* enum vx_budget_trip */
} vx_budget_frame;

typedef struct vx_budget {
    lua_Alloc base_alloc;  /* the state's own allocator */
    void *base_ud;
    int64_t in_use;        /* bytes the state holds (from the allocator's view) */
    int64_t peak_in_call;  /* highest in_use seen while a budget was entered */
    int depth;             /* frames entered */
    vx_budget_frame frames[VX_BUDGET_MAX_DEPTH];
    uint64_t trips[4];     /* how many calls tripped, by reason */
    lua_Hook prev_hook;    /* the hook set before ours was armed */
    int prev_mask, prev_count;
    lua_State *L;          /* the state whose hook the watchdog arms */
    uv_mutex_t mu;         /* frames and arming, between the loop thread and the watchdog */
    int mu_ready;
    int armed;             /* our hook is set */
} vx_budget;

/* Wrap L's allocator; b must outlive L. Returns 0, or -1 when the mutex
 * cannot be made. vx_budget_uninstall after lua_close. */
int vx_budget_install(vx_budget *b, lua_State *L);
void vx_budget_uninstall(vx_budget *b);

/* From the watchdog thread: arm the hook if the innermost frame is over its
 * time or a stop signal arrived. Returns 1 while a budget is entered (poll
 * often), 0 otherwise. */
int vx_budget_poll(vx_budget *b);

/* Enter a budget: time_ms of wall clock, mem_bytes of growth over what the
 * state holds now. Returns 0, or -1 when nested too deep. */
int vx_budget_enter(vx_budget *b, uint64_t time_ms, int64_t mem_bytes);

/* Leave the innermost budget; returns why it tripped (VX_TRIP_NONE if it
 * did not). */
int vx_budget_leave(vx_budget *b);

/* The innermost frame's trip (VX_TRIP_NONE outside a budget). */
int vx_budget_tripped(const vx_budget *b);

const char *vx_budget_trip_name(int trip);

/* Signals: a SIGINT/SIGTERM handler that counts, then hands over to the
 * handler installed before it (libuv's). Signals are process-wide, so the
 * count is the one process-wide variable here. */
void vx_budget_watch_signals(void);
uint64_t vx_budget_signal_count(void);
int vx_budget_last_signal(void);

#endif
