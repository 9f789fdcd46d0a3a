/*
 * budget.c — time and memory budgets for untrusted Lua; see budget.h.
 */
#include "budget.h"

#include <signal.h>
#include <string.h>

#include <uv.h>


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

int vx_budget_install(vx_budget *b, lua_State *L) {
    memset(b, 0, sizeof *b);
    if (uv_mutex_init(&b->mu) != 0) return -1;
    b->mu_ready = 1;
    b->L = L;
    b->base_alloc = lua_getallocf(L, &b->base_ud);
    b->in_use = (int64_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + lua_gc(L, LUA_GCCOUNTB, 0);
    lua_setallocf(L, budget_alloc, b);
    return 0;
}

void vx_budget_uninstall(vx_budget *b) {
    if (b->mu_ready) uv_mutex_destroy(&b->mu);
    b->mu_ready = 0;
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

static int over(const vx_budget_frame *f) {
    if ((uint64_t)signal_count != f->signals_at) return VX_TRIP_SIGNAL;
    if (uv_hrtime() > f->deadline_ns) return VX_TRIP_TIME;
    return VX_TRIP_NONE;
}

static void budget_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    void *ud = NULL;
    if (lua_getallocf(L, &ud) != budget_alloc) return;
    vx_budget *b = ud;
    vx_budget_frame *f = top(b);
    if (!f) return;
    if (f->trip == VX_TRIP_NONE) f->trip = over(f);
    if (f->trip == VX_TRIP_NONE) return; /* armed for an outer frame's reason: not ours yet */
    /* raised again at every instruction until the frame is left: uncatchable in effect */
    lua_pushfstring(L, "budget exceeded (%s)", vx_budget_trip_name(f->trip));
    lua_error(L);
}

/* with b->mu held */
static void arm(vx_budget *b) {
    b->prev_hook = lua_gethook(b->L); /* put back on leave (a profiler, a test's hook) */
    b->prev_mask = lua_gethookmask(b->L);
    b->prev_count = lua_gethookcount(b->L);
    lua_sethook(b->L, budget_hook, LUA_MASKCOUNT, 1);
    b->armed = 1;
}

static void disarm(vx_budget *b) {
    lua_sethook(b->L, b->prev_hook, b->prev_hook ? b->prev_mask : 0, b->prev_count);
    b->armed = 0;
}

int vx_budget_poll(vx_budget *b) {
    if (!b->mu_ready) return 0;
    uv_mutex_lock(&b->mu);
    int active = b->depth > 0;
    if (active && !b->armed) {
        const vx_budget_frame *f = top(b);
        if (f->trip != VX_TRIP_NONE || over(f) != VX_TRIP_NONE) arm(b);
    }
    uv_mutex_unlock(&b->mu);
    return active;
}

int vx_budget_enter(vx_budget *b, uint64_t time_ms, int64_t mem_bytes) {
    if (b->depth >= VX_BUDGET_MAX_DEPTH) return -1;
    const vx_budget_frame *outer = top(b);
    vx_budget_frame f = {0};
    f.deadline_ns = uv_hrtime() + time_ms * 1000000ull;
    /* growth over what the state holds now, garbage included: an absolute
     * ceiling would starve every call of a runtime whose own heap is big */
    f.mem_ceiling = mem_bytes > INT64_MAX - b->in_use ? INT64_MAX : b->in_use + mem_bytes;
    f.signals_at = (uint64_t)signal_count;
    if (outer) {
        if (outer->deadline_ns < f.deadline_ns) f.deadline_ns = outer->deadline_ns;
        if (outer->mem_ceiling < f.mem_ceiling) f.mem_ceiling = outer->mem_ceiling;
        f.signals_at = outer->signals_at;
        f.trip = outer->trip;
    } else {
        b->peak_in_call = b->in_use;
    }
    uv_mutex_lock(&b->mu);
    b->frames[b->depth++] = f;
    uv_mutex_unlock(&b->mu);
    return 0;
}

int vx_budget_leave(vx_budget *b) {
    if (b->depth == 0) return VX_TRIP_NONE;
    uv_mutex_lock(&b->mu);
    int trip = b->frames[--b->depth].trip;
    vx_budget_frame *outer = top(b);
    /* a signal ends every frame; time and memory are each frame's own limits */
    if (outer && trip == VX_TRIP_SIGNAL) outer->trip = trip;
    if (b->armed && (!outer || (outer->trip == VX_TRIP_NONE && over(outer) == VX_TRIP_NONE))) disarm(b);
    uv_mutex_unlock(&b->mu);
    if (trip > VX_TRIP_NONE && trip <= VX_TRIP_SIGNAL) b->trips[trip]++;
    return trip;
}

int vx_budget_tripped(const vx_budget *b) { return b->depth > 0 ? b->frames[b->depth - 1].trip : VX_TRIP_NONE; }
