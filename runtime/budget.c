/*
 * budget.c — time and memory budgets for untrusted Lua; see budget.h.
 */
#include "budget.h"

#include <signal.h>
#include <string.h>

#include <uv.h>

#define HOOK_EVERY_INSTRUCTIONS 1000

/* ---- signals (process-wide by nature) ----------------------------------- */

static volatile sig_atomic_t signal_count;
static volatile sig_atomic_t last_signal;
static struct sigaction chained[2]; /* what was installed before us: SIGINT, SIGTERM */

static void on_stop_signal(int sig) {
    signal_count = signal_count + 1;
    last_signal = sig;
    const struct sigaction *next = &chained[sig == SIGTERM];
    if (next->sa_flags & SA_SIGINFO) return; /* libuv installs a plain handler; nothing else is ours to call */
    if (next->sa_handler != SIG_DFL && next->sa_handler != SIG_IGN && next->sa_handler != NULL)
        next->sa_handler(sig);
}

static void chain_signal(int sig, struct sigaction *prev) {
    struct sigaction cur;
    if (sigaction(sig, NULL, &cur) != 0) return;
    if (!(cur.sa_flags & SA_SIGINFO) && cur.sa_handler == on_stop_signal) return; /* already ours */
    struct sigaction mine = cur;
    mine.sa_flags &= ~(SA_SIGINFO | SA_RESETHAND);
    mine.sa_handler = on_stop_signal;
    *prev = cur;
    if (sigaction(sig, &mine, NULL) != 0) *prev = (struct sigaction){0};
}

void vx_budget_watch_signals(void) {
    chain_signal(SIGINT, &chained[0]);
    chain_signal(SIGTERM, &chained[1]);
}

uint64_t vx_budget_signal_count(void) { return (uint64_t)signal_count; }
int vx_budget_last_signal(void) { return (int)last_signal; }

/* ---- allocator ------------------------------------------------------------ */

static vx_budget_frame *top(vx_budget *b) { return b->depth > 0 ? &b->frames[b->depth - 1] : NULL; }

static void *budget_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    vx_budget *b = ud;
    vx_budget_frame *f = top(b);
    if (f && nsize > osize) {
        int64_t after = b->in_use + (int64_t)(nsize - osize);
        if (after > f->mem_ceiling) {
            if (f->trip == VX_TRIP_NONE) f->trip = VX_TRIP_MEMORY;
            return NULL; /* LuaJIT raises "not enough memory" */
        }
    }
    void *p = b->base_alloc(b->base_ud, ptr, osize, nsize);
    if (p || nsize == 0) {
        b->in_use += (int64_t)nsize - (int64_t)osize;
        if (f && b->in_use > b->peak_in_call) b->peak_in_call = b->in_use;
    }
    return p;
}

void vx_budget_install(vx_budget *b, lua_State *L) {
    memset(b, 0, sizeof *b);
    b->base_alloc = lua_getallocf(L, &b->base_ud);
    b->in_use = (int64_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + lua_gc(L, LUA_GCCOUNTB, 0);
    b->hard_limit = INT64_MAX;
    lua_setallocf(L, budget_alloc, b);
}

/* ---- the hook ------------------------------------------------------------- */

const char *vx_budget_trip_name(int trip) {
    switch (trip) {
    case VX_TRIP_TIME: return "time";
    case VX_TRIP_MEMORY: return "memory";
    case VX_TRIP_SIGNAL: return "signal";
    default: return "none";
    }
}

static void budget_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    void *ud = NULL;
    if (lua_getallocf(L, &ud) != budget_alloc) return;
    vx_budget *b = ud;
    vx_budget_frame *f = top(b);
    if (!f) return;
    if (f->trip == VX_TRIP_NONE) {
        if ((uint64_t)signal_count != f->signals_at) f->trip = VX_TRIP_SIGNAL;
        else if (uv_hrtime() > f->deadline_ns) f->trip = VX_TRIP_TIME;
        else return;
    }
    /* raised again at every hook until the frame is left: uncatchable in effect */
    lua_pushfstring(L, "budget exceeded (%s)", vx_budget_trip_name(f->trip));
    lua_error(L);
}

int vx_budget_enter(vx_budget *b, lua_State *L, uint64_t time_ms, int64_t mem_bytes) {
    if (b->depth >= VX_BUDGET_MAX_DEPTH) return -1;
    const vx_budget_frame *outer = top(b);
    vx_budget_frame f = {0};
    f.deadline_ns = uv_hrtime() + time_ms * 1000000ull;
    f.mem_ceiling = mem_bytes > INT64_MAX - b->in_use ? INT64_MAX : b->in_use + mem_bytes;
    if (f.mem_ceiling > b->hard_limit) f.mem_ceiling = b->in_use > b->hard_limit ? b->in_use : b->hard_limit;
    f.signals_at = (uint64_t)signal_count;
    if (outer) {
        if (outer->deadline_ns < f.deadline_ns) f.deadline_ns = outer->deadline_ns;
        if (outer->mem_ceiling < f.mem_ceiling) f.mem_ceiling = outer->mem_ceiling;
        f.signals_at = outer->signals_at;
        f.trip = outer->trip;
    } else {
        b->peak_in_call = b->in_use;
        b->prev_hook = lua_gethook(L); /* put back on leave (a profiler, a test's hook) */
        b->prev_mask = lua_gethookmask(L);
        b->prev_count = lua_gethookcount(L);
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, HOOK_EVERY_INSTRUCTIONS);
    }
    b->frames[b->depth++] = f;
    return 0;
}

int vx_budget_leave(vx_budget *b, lua_State *L) {
    if (b->depth == 0) return VX_TRIP_NONE;
    int trip = b->frames[--b->depth].trip;
    vx_budget_frame *outer = top(b);
    /* a signal ends every frame; time and memory are each frame's own limits */
    if (outer && trip == VX_TRIP_SIGNAL) outer->trip = trip;
    if (!outer) lua_sethook(L, b->prev_hook, b->prev_hook ? b->prev_mask : 0, b->prev_count);
    if (trip > VX_TRIP_NONE && trip <= VX_TRIP_SIGNAL) b->trips[trip]++;
    return trip;
}

int vx_budget_tripped(const vx_budget *b) { return b->depth > 0 ? b->frames[b->depth - 1].trip : VX_TRIP_NONE; }
