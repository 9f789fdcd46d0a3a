/*
 * ta.c — indicators: the registry (names, parameters, lookbacks), state
 * set-up and streams. The batch kernels are in ta_kernels.c; what both use
 * (building blocks, states, steps) in ta_impl.h. See ta.h for the contract.
 *
 * Shape of every indicator: a state struct, an init that carves its ring
 * buffers out of one allocation, and a step
 *
 *     step(state, v[slots], o[outputs], commit)
 *
 * that computes the outputs for one more bar from the committed state without
 * touching it, then, only if commit is set, folds the bar in. A forming
 * candle is a step with commit = 0. Batch runs the warm-up through the same
 * step, then a kernel (see "batch kernels") that repeats the step's
 * arithmetic in the step's order, so batch and stream agree bit for bit.
 *
 * Running sums are re-summed exactly from their ring every time the ring
 * wraps (amortised O(1)) and count their non-zero members, so a window of
 * zeros sums to exactly zero and rounding never accumulates over millions of
 * bars. Divisions by a zero denominator give 0 as in TA-Lib, but with an exact
 * zero test: TA-Lib's "below 1e-8 is zero" breaks sub-cent prices.
 */
#include "ta_impl.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>


/* Whether the hand-written AVX2 paths run: the CPU has AVX2, and
 * VIBEX_TA_ISA is not "sse2" (the test run checks both paths with it). A
 * fact about the process, so it is worked out once and cached. */
int vx_ta_avx2(void) {
    static atomic_int cached = -1;
    int v = atomic_load_explicit(&cached, memory_order_relaxed);
    if (v < 0) {
        const char *isa = getenv("VIBEX_TA_ISA");
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx2") && !(isa && strcmp(isa, "sse2") == 0);
        atomic_store_explicit(&cached, v, memory_order_relaxed);
    }
    return v;
}

const char *vx_ta_isa(void) { return vx_ta_avx2() ? "avx2" : "sse2"; }

/* vx_ta_alloc's layout: a 4 KB page holding the mapping's start and length
 * just below the 2 MB boundary the doubles start on; the rest of what was
 * mapped to find that boundary is given back at once. */
enum { HUGE_PAGE = 2u << 20, HEAD_PAGE = 4096 };

typedef struct {
    void *base;
    size_t len;
} map_head;

double *vx_ta_alloc(size_t n) {
    if (n > (SIZE_MAX - 2 * (size_t)HUGE_PAGE) / sizeof(double)) return NULL;
    size_t bytes = (n * sizeof(double) + HEAD_PAGE - 1) / HEAD_PAGE * HEAD_PAGE;
    size_t len = HEAD_PAGE + bytes + HUGE_PAGE;
    char *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) return NULL;
    uintptr_t at = ((uintptr_t)map + HEAD_PAGE + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1);
    char *start = (char *)at - HEAD_PAGE, *end = (char *)at + bytes;
    /* unmapping parts of a fresh private mapping cannot fail but for bad
     * arguments, which these are not; a failure would only keep them mapped */
    if (start > map && munmap(map, (size_t)(start - map)) != 0) start = map;
    if (map + len > end && munmap(end, (size_t)(map + len - end)) != 0) end = map + len;
    /* advice: without transparent huge pages it fails (EINVAL), and small pages serve */
    (void)madvise((void *)at, bytes, MADV_HUGEPAGE);
    map_head *head = (map_head *)((char *)at - sizeof(map_head));
    head->base = start;
    head->len = (size_t)(end - start);
    return (double *)at;
}

void vx_ta_free(double *p) {
    if (!p) return;
    const map_head *head = (const map_head *)((char *)p - sizeof(map_head));
    if (munmap(head->base, head->len) != 0)
        fprintf(stderr, "vx_ta_free: munmap of a series' memory failed: %s\n", strerror(errno));
}

const vx_ta_info VX_TA_KINDS[K_COUNT] = {
    [K_SMA] = {"sma", "Simple moving average", BIT(C), 1, 1, {"period"}, {30}, 1, {"sma"}},
    [K_EMA] = {"ema", "Exponential moving average", BIT(C), 1, 1, {"period"}, {30}, 1, {"ema"}},
    [K_WMA] = {"wma", "Weighted moving average", BIT(C), 1, 1, {"period"}, {30}, 1, {"wma"}},
    [K_DEMA] = {"dema", "Double exponential moving average", BIT(C), 1, 1, {"period"}, {30}, 1, {"dema"}},
    [K_TEMA] = {"tema", "Triple exponential moving average", BIT(C), 1, 1, {"period"}, {30}, 1, {"tema"}},
    [K_RSI] = {"rsi", "Relative strength index", BIT(C), 1, 1, {"period"}, {14}, 1, {"rsi"}},
    [K_MACD] = {"macd", "Moving average convergence/divergence", BIT(C), 3, 3,
                {"fast", "slow", "signal"}, {12, 26, 9}, 7, {"macd", "signal", "hist"}},
    [K_BBANDS] = {"bbands", "Bollinger bands", BIT(C), 3, 3, {"period", "up", "down"},
                  {5, 2, 2}, 1, {"upper", "middle", "lower"}},
    [K_ATR] = {"atr", "Average true range", HLC, 1, 1, {"period"}, {14}, 1, {"atr"}},
    [K_NATR] = {"natr", "Normalized average true range", HLC, 1, 1, {"period"}, {14}, 1, {"natr"}},
    [K_ADX] = {"adx", "Average directional index", HLC, 1, 3, {"period"}, {14}, 1,
               {"adx", "plus_di", "minus_di"}},
    [K_STOCH] = {"stoch", "Stochastic oscillator", HLC, 3, 2, {"fastk", "slowk", "slowd"},
                 {5, 3, 3}, 7, {"k", "d"}},
    [K_STOCHRSI] = {"stochrsi", "Stochastic RSI", BIT(C), 3, 2, {"period", "fastk", "fastd"},
                    {14, 5, 3}, 7, {"k", "d"}},
    [K_CCI] = {"cci", "Commodity channel index", HLC, 1, 1, {"period"}, {14}, 1, {"cci"}},
    [K_MFI] = {"mfi", "Money flow index", HLC | BIT(V), 1, 1, {"period"}, {14}, 1, {"mfi"}},
    [K_OBV] = {"obv", "On-balance volume", BIT(C) | BIT(V), 0, 1, {0}, {0}, 0, {"obv"}},
    [K_VWAP] = {"vwap", "Volume-weighted average price (session-anchored)", HLC | BIT(V) | BIT(T),
                1, 1, {"session_ms"}, {86400000}, 0, {"vwap"}},
    [K_ROC] = {"roc", "Rate of change (percent)", BIT(C), 1, 1, {"period"}, {10}, 1, {"roc"}},
    [K_WILLR] = {"willr", "Williams %R", HLC, 1, 1, {"period"}, {14}, 1, {"willr"}},
    [K_DONCHIAN] = {"donchian", "Donchian channels", BIT(H) | BIT(L), 1, 3, {"period"}, {20}, 1,
                    {"upper", "middle", "lower"}},
    [K_KELTNER] = {"keltner", "Keltner channels (EMA +- mult x ATR)", HLC, 3, 3,
                   {"period", "mult", "atr_period"}, {20, 2, 10}, 5, {"upper", "middle", "lower"}},
    [K_SUPERTREND] = {"supertrend", "SuperTrend", HLC, 2, 2, {"period", "mult"}, {10, 3}, 1,
                      {"supertrend", "direction"}},
    [K_STDDEV] = {"stddev", "Standard deviation (population)", BIT(C), 2, 1, {"period", "nbdev"},
                  {5, 1}, 1, {"stddev"}},
    [K_RVOL] = {"rvol", "Realized volatility of log returns", BIT(C), 2, 1,
                {"period", "annualize"}, {20, 1}, 1, {"rvol"}},
};

const vx_ta_info *vx_ta_kinds(int *count) {
    *count = K_COUNT;
    return VX_TA_KINDS;
}

/* ---- parameters and lookbacks ------------------------------------------ */

static int check_params(int kind, const double *p, char *err, size_t errlen) {
    const vx_ta_info *in = &VX_TA_KINDS[kind];
    for (int i = 0; i < in->nparams; i++) {
        double v = p[i];
        if (!isfinite(v)) {
            snprintf(err, errlen, "%s: %s must be a finite number", in->name, in->param_names[i]);
            return -1;
        }
        if ((in->period_params >> i) & 1u) {
            if (v != floor(v) || v < 1 || v > MAX_PERIOD) {
                snprintf(err, errlen, "%s: %s must be a whole number from 1 to %d, got %g",
                         in->name, in->param_names[i], MAX_PERIOD, v);
                return -1;
            }
        }
    }
    if (kind == K_VWAP && !(p[0] >= 1000)) {
        snprintf(err, errlen, "vwap: session_ms must be at least 1000 (a day is 86400000), got %g", p[0]);
        return -1;
    }
    if (kind == K_RVOL && !(p[1] > 0)) {
        snprintf(err, errlen, "rvol: annualize must be positive (bars per year, or 1), got %g", p[1]);
        return -1;
    }
    return 0;
}

static int lookback_of(int kind, const double *p) {
    int a = (int)p[0], b = (int)p[1], c = (int)p[2];
    switch (kind) {
    case K_SMA: case K_EMA: case K_WMA: case K_BBANDS: case K_CCI: case K_WILLR:
    case K_DONCHIAN: case K_STDDEV:
        return a - 1;
    case K_DEMA: return 2 * (a - 1);
    case K_TEMA: return 3 * (a - 1);
    case K_RSI: case K_ATR: case K_NATR: case K_MFI: case K_ROC: case K_SUPERTREND: case K_RVOL:
        return a;
    case K_MACD: return (a > b ? a : b) - 1 + c - 1;
    case K_ADX: return 2 * a - 1;
    case K_STOCH: return a - 1 + b - 1 + c - 1;
    case K_STOCHRSI: return a + b - 1 + c - 1;
    case K_KELTNER: return a - 1 > c ? a - 1 : c;
    default: return 0;   /* OBV, VWAP */
    }
}

int vx_ta_lookback(int kind, const double *params, char *err, size_t errlen) {
    if (kind < 0 || kind >= K_COUNT) {
        snprintf(err, errlen, "unknown indicator kind %d", kind);
        return -1;
    }
    if (check_params(kind, params, err, errlen)) return -1;
    return lookback_of(kind, params);
}

/* Doubles of ring memory a state needs. */
static size_t mem_of(int kind, const double *p) {
    size_t a = (size_t)p[0], b = (size_t)p[1];
    switch (kind) {
    case K_SMA: case K_WMA: case K_BBANDS: case K_ROC: case K_STDDEV: case K_RVOL: return a;
    case K_STOCH: return 4 * a + b + (size_t)p[2];
    case K_STOCHRSI: return 4 * b + (size_t)p[2];
    case K_CCI: return a;
    case K_MFI: return 2 * a;
    case K_WILLR: case K_DONCHIAN: return 4 * a;
    default: return 0;
    }
}

static void state_init(int kind, ta_state *u, const double *p, double *mem) {
    int a = (int)p[0], b = (int)p[1], c = (int)p[2];
    memset(u, 0, sizeof *u);
    switch (kind) {
    case K_SMA: sma_init(&u->sma.s, &mem, a); break;
    case K_EMA: ema_init(&u->ema.e, a, 1); break;
    case K_WMA:
        ring_init(&u->wma.r, mem, a > 1 ? a - 1 : 1);
        u->wma.n = a;
        u->wma.div = a * (a + 1.0) / 2.0;
        break;
    case K_DEMA: case K_TEMA:
        ema_init(&u->xema.e1, a, 1); ema_init(&u->xema.e2, a, 1); ema_init(&u->xema.e3, a, 1);
        break;
    case K_RSI: case K_STOCHRSI:
        wilder_init(&u->rsi.g, a, 1);
        wilder_init(&u->rsi.l, a, 1);
        if (kind == K_STOCHRSI) {
            mono_init(&u->stochrsi.hi, &mem, b);
            mono_init(&u->stochrsi.lo, &mem, b);
            u->stochrsi.fk = b;
            sma_init(&u->stochrsi.fd, &mem, c);
        }
        break;
    case K_MACD: {
        int fast = a < b ? a : b, slow = a < b ? b : a;   /* TA-Lib swaps them */
        ema_init(&u->macd.fast, fast, 0);
        ema_init(&u->macd.slow, slow, 0);
        ema_init(&u->macd.sig, c, 0);
        u->macd.skip = slow - fast;  /* the fast EMA is seeded where the slow one is */
        break;
    }
    case K_BBANDS: var_init(&u->bb.v, &mem, a); u->bb.up = p[1]; u->bb.dn = p[2]; break;
    case K_STDDEV: var_init(&u->std.v, &mem, a); u->std.nbdev = p[1]; break;
    case K_ATR: case K_NATR: wilder_init(&u->atr.a.w, a, 1); break;
    case K_ADX:
        wsum_init(&u->adx.dmp, a);
        wsum_init(&u->adx.dmm, a);
        wsum_init(&u->adx.tr, a);
        wilder_init(&u->adx.adx, a, 1);
        break;
    case K_STOCH:
        mono_init(&u->stoch.hi, &mem, a);
        mono_init(&u->stoch.lo, &mem, a);
        u->stoch.fk = a;
        sma_init(&u->stoch.sk, &mem, b);
        sma_init(&u->stoch.sd, &mem, c);
        break;
    case K_CCI:
        ring_init(&u->cci.sum.r, mem, a);
        u->cci.n = a;
        break;
    case K_MFI:
        ring_init(&u->mfi.pos.r, mem, a);
        ring_init(&u->mfi.neg.r, mem + a, a);
        u->mfi.n = a;
        break;
    case K_VWAP:
        u->vwap.anchor = p[0];
        u->vwap.session = u->vwap.lo = u->vwap.hi = NAN;
        break;
    case K_ROC: ring_init(&u->roc.r, mem, a); u->roc.n = a; break;
    case K_WILLR: case K_DONCHIAN:
        mono_init(&u->hl.hi, &mem, a);
        mono_init(&u->hl.lo, &mem, a);
        u->hl.n = a;
        break;
    case K_KELTNER:
        ema_init(&u->kelt.e, a, 1);
        u->kelt.mult = p[1];
        wilder_init(&u->kelt.a.w, c, 1);
        break;
    case K_SUPERTREND: wilder_init(&u->st.a.w, a, 1); u->st.mult = p[1]; break;
    case K_RVOL: ring_init(&u->rv.rs.r, mem, a); u->rv.n = a; u->rv.scale = p[1] / a; break;
    default: break;
    }
}


void vx_ta_describe_bad(int kind, int slot, const double *v, int64_t index, char *err, size_t errlen) {
    const char *what = VX_TA_KINDS[kind].inputs == BIT(C) ? "value" : SLOT_NAMES[slot];
    const char *why = !isfinite(v[slot]) ? "is not a finite number"
                    : slot == V ? "is negative"
                    : "must be positive (log returns)";
    if (index >= 0)
        snprintf(err, errlen, "%s: %s at bar %lld %s (%g); clean or drop that bar first",
                 VX_TA_KINDS[kind].name, what, (long long)index + 1, why, v[slot]);
    else
        snprintf(err, errlen, "%s: %s %s (%g); the update was ignored",
                 VX_TA_KINDS[kind].name, what, why, v[slot]);
}
void vx_ta_format_call(int kind, const double *p, char *buf, size_t len) {
    const vx_ta_info *in = &VX_TA_KINDS[kind];
    size_t used = (size_t)snprintf(buf, len, "%s(", in->name);
    for (int i = 0; i < in->nparams && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%g", i ? ", " : "", p[i]);
    if (used < len) snprintf(buf + used, len - used, ")");
}
ta_impl *vx_ta_impl_new(int kind, const double *params, char *err, size_t errlen) {
    int lb = vx_ta_lookback(kind, params, err, errlen);
    if (lb < 0) return NULL;
    size_t nmem = mem_of(kind, params);
    ta_impl *s = calloc(1, sizeof *s + nmem * sizeof(double));
    if (!s) {
        snprintf(err, errlen, "%s: out of memory", VX_TA_KINDS[kind].name);
        return NULL;
    }
    memcpy(s->params, params, (size_t)VX_TA_KINDS[kind].nparams * sizeof(double));
    s->nmem = nmem;
    s->pub.kind = kind;
    s->pub.noutputs = VX_TA_KINDS[kind].noutputs;
    s->pub.lookback = lb;
    for (int k = 0; k < VX_TA_MAXOUT; k++) s->pub.out[k] = NAN;
    state_init(kind, &s->u, s->params, s->mem);
    return s;
}

/* ---- streams ----------------------------------------------------------------- */

vx_ta_stream *vx_ta_stream_new(int kind, const double *params, char *err, size_t errlen) {
    ta_impl *s = vx_ta_impl_new(kind, params, err, errlen);
    return s ? &s->pub : NULL;
}

void vx_ta_reset(vx_ta_stream *pub) {
    ta_impl *s = (ta_impl *)pub;
    memset(s->mem, 0, s->nmem * sizeof(double));
    state_init(pub->kind, &s->u, s->params, s->mem);
    pub->count = 0;
    pub->failed = 0;
    pub->err[0] = 0;
    for (int k = 0; k < VX_TA_MAXOUT; k++) pub->out[k] = NAN;
}

#define STREAM(KIND, STEP) \
    case KIND: STEP(u, v, o, commit); break;

double vx_ta_update(vx_ta_stream *pub, double high, double low, double close,
                    double volume, double time, int commit) {
    ta_impl *s = (ta_impl *)pub;
    ta_state *u = &s->u;
    double v[VX_TA_NSLOTS] = {high, low, close, volume, time};
    double *o = pub->out;
    int bad = bad_slot(pub->kind, VX_TA_KINDS[pub->kind].inputs, v);
    if (bad) {
        vx_ta_describe_bad(pub->kind, bad - 1, v, -1, pub->err, sizeof pub->err);
        pub->failed = 1;
        return NAN;
    }
    pub->failed = 0;
    switch (pub->kind) {
    STREAM(K_SMA, step_sma)
    STREAM(K_EMA, step_ema)
    STREAM(K_WMA, step_wma)
    STREAM(K_DEMA, step_dema)
    STREAM(K_TEMA, step_tema)
    STREAM(K_RSI, step_rsi)
    STREAM(K_MACD, step_macd)
    STREAM(K_BBANDS, step_bbands)
    STREAM(K_ATR, step_atr)
    STREAM(K_NATR, step_natr)
    STREAM(K_ADX, step_adx)
    STREAM(K_STOCH, step_stoch)
    STREAM(K_STOCHRSI, step_stochrsi)
    STREAM(K_CCI, step_cci)
    STREAM(K_MFI, step_mfi)
    STREAM(K_OBV, step_obv)
    STREAM(K_VWAP, step_vwap)
    STREAM(K_ROC, step_roc)
    STREAM(K_WILLR, step_willr)
    STREAM(K_DONCHIAN, step_donchian)
    STREAM(K_KELTNER, step_keltner)
    STREAM(K_SUPERTREND, step_supertrend)
    STREAM(K_STDDEV, step_stddev)
    STREAM(K_RVOL, step_rvol)
    default: break;
    }
    if (commit) pub->count++;
    return o[0];
}

void vx_ta_stream_free(vx_ta_stream *s) {
    free(s);
}
