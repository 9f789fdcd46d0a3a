/*
 * ta_impl.h — what the indicator registry and streams (ta.c) and the batch
 * kernels (ta_kernels.c) share: the running-sum and ring building blocks,
 * every indicator's state and its step. Internal to the runtime; Lua and
 * other modules use ta.h.
 *
 * The steps are static inline here so that the stream's update (ta.c, built
 * with the project's flags) and the kernels' warm-up and generic loop
 * (ta_kernels.c, built with -O3 and ISA clones) inline the same source:
 * with no fast-math and no FMA contraction both give the same bits.
 */
#ifndef VX_TA_IMPL_H
#define VX_TA_IMPL_H

#include "ta.h"

#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PERIOD 100000

/* ---- instruction sets ----------------------------------------------------
 *
 * The batch kernels are built twice (target_clones: plain x86-64 and AVX2,
 * picked by the loader from the CPU), and the hand-written SIMD paths have
 * AVX2 twins picked by ta_avx2(). Four lanes instead of two change no
 * result: each lane does the same operations in the same order, and nothing
 * is contracted into FMAs (ISO C mode: -ffp-contract=off). */
#define TA_KERNEL __attribute__((target_clones("avx2", "default")))
#define TA_AVX2 __attribute__((target("avx2")))

/* Whether the hand-written AVX2 paths run (ta.c): the CPU has AVX2 and
 * VIBEX_TA_ISA is not "sse2". */
int vx_ta_avx2(void);

/* glibc's libmvec: log of two (SSE ABI) or four (AVX2 ABI) doubles at once;
 * the library picks its code for the CPU at load time. Realized volatility
 * takes every log through the variant vx_ta_avx2() picks, in stream and batch
 * alike, so both get the same bits; libm's scalar log was a third of that
 * indicator's time. Within 4 ulp of the true log. */
__m128d _ZGVbN2v_log(__m128d x);
__m256d _ZGVdN4v_log(__m256d x);

static inline TA_AVX2 double log1_avx2(double x) {
    return _mm256_cvtsd_f64(_ZGVdN4v_log(_mm256_set1_pd(x)));
}

static inline double log1_mvec(double x) {
    return vx_ta_avx2() ? log1_avx2(x) : _mm_cvtsd_f64(_ZGVbN2v_log(_mm_set1_pd(x)));
}

/* ---- rings and running sums ------------------------------------------ */

typedef struct {
    double *buf;
    int n;
    int pos;      /* next slot to write; the oldest value once full */
    int full;
} ring_t;

static inline void ring_init(ring_t *r, double *mem, int n) {
    r->buf = mem;
    r->n = n;
    r->pos = 0;
    r->full = 0;
}

/* The value the next push evicts (0 while not yet full). */
static inline double ring_oldest(const ring_t *r) {
    return r->full ? r->buf[r->pos] : 0.0;
}

/* Returns 1 when this push wrapped the ring. */
static inline int ring_push(ring_t *r, double x) {
    r->buf[r->pos] = x;
    if (++r->pos == r->n) {
        r->pos = 0;
        r->full = 1;
        return 1;
    }
    return 0;
}

/* Re-sum a running sum exactly at the first wrap after this many commits:
 * often enough that rounding never builds up, rare enough to cost nothing. */
#define RESUM_EVERY 1024

/* A window sum kept as four interleaved chains. With d[i] = x[i] - x[i-p]
 * (x[i-p] = 0 while the ring fills, d = 0 before the first push), the sum
 * after push i is
 *
 *     S[i] = S[i-4] + ((d[i] + d[i-1]) + (d[i-2] + d[i-3]))
 *
 * which is the running sum reassociated so that batch can run four
 * independent adds (two SSE2 pairs) instead of one serial chain; stream and
 * batch both use this form, so they still agree bit for bit. An all-zero
 * window (counted by nz) is exactly 0 and resets its chain. At the first
 * ring wrap after RESUM_EVERY commits, the sums after that push and the next
 * three are re-taken exactly (oldest to newest), so every chain restarts
 * from an exact value. */
typedef struct {
    ring_t r;
    double lane[4];        /* the sum after push i sits at lane[i & 3] */
    double d1, d2, d3;     /* d of the last three pushes, newest first */
    unsigned i;            /* pushes, modulo 2^32 (only i & 3 is used) */
    int nz;                /* non-zero members of the window */
    int since;             /* commits since the last exact re-sum */
    int exact;             /* commits left whose sum is re-taken exactly */
} rsum_t;

static inline double rsum_peek(const rsum_t *s, double x, int *nz) {
    double old = ring_oldest(&s->r), d = x - old;
    int z = s->nz + (x != 0.0) - (old != 0.0);
    *nz = z;
    return z ? s->lane[s->i & 3] + ((d + s->d1) + (s->d2 + s->d3)) : 0.0;
}

static inline double exact_sum(const double *x, int n) {
    double t = 0.0;
    for (int i = 0; i < n; i++) t += x[i];
    return t;
}

/* The window of a full ring, summed oldest to newest. */
static inline double ring_sum(const ring_t *r) {
    double t = 0.0;
    for (int i = r->pos; i < r->n; i++) t += r->buf[i];
    for (int i = 0; i < r->pos; i++) t += r->buf[i];
    return t;
}

static inline void rsum_commit(rsum_t *s, double x, double sum, int nz) {
    double d = x - ring_oldest(&s->r);
    s->d3 = s->d2;
    s->d2 = s->d1;
    s->d1 = d;
    s->nz = nz;
    s->since++;
    if (ring_push(&s->r, x) && s->since >= RESUM_EVERY) {
        s->since = 0;
        s->exact = 4;
    }
    if (s->exact) {
        s->exact--;
        if (nz) sum = ring_sum(&s->r);
    }
    s->lane[s->i++ & 3] = sum;
}

/* ---- moving-average building blocks ------------------------------------ */

typedef struct {       /* simple moving average of the last n values */
    rsum_t rs;
    int64_t cnt;
    int n;
    double inv;   /* 1/n: a multiply (batch vectorises it) where a divide costs 2+ cycles a bar */
} sma_t;

static inline void sma_init(sma_t *s, double **mem, int n) {
    ring_init(&s->rs.r, *mem, n);
    *mem += n;
    s->n = n;
    s->inv = 1.0 / n;
}

static inline double sma_step(sma_t *s, double x, int commit) {
    int nz;
    double sum = rsum_peek(&s->rs, x, &nz);
    double v = s->cnt >= s->n - 1 ? sum * s->inv : NAN;
    if (commit) {
        rsum_commit(&s->rs, x, sum, nz);
        s->cnt++;
    }
    return v;
}

/* Exponential averages (EMA and Wilder's): seeded with the SMA of the first
 * n values, then v = prev*a + x*k. For EMA k = 2/(n+1), a = 1-k (TA-Lib's
 * (x-prev)*k + prev rearranged); for Wilder k = 1/n, a = (n-1)/n (TA-Lib's
 * (prev*(n-1)+x)/n with the divide off the chain). Either way one multiply
 * and one add sit on the chain from one bar to the next, 6 cycles here,
 * which cannot keep up with memory. So from the fourth value after the seed
 * on, the recurrence runs as four interleaved chains:
 *
 *     v[i] = a^4 v[i-4] + ((k x[i] + ak x[i-1]) + (a^2k x[i-2] + a^3k x[i-3]))
 *
 * Batch (ew_run) runs them side by side (one AVX2 quad or two SSE2 pairs);
 * the step uses the same form from the same value on, so the two agree bit
 * for bit. Against the serial recurrence this differs by a few ulps. */
typedef struct {
    int64_t cnt, from;           /* from: the input count where the chains start */
    double k, a, sum, val;       /* val: the last value while serial */
    double last[4];              /* the value after input i at last[i & 3] */
    double x1, x2, x3;           /* the last three inputs, newest first */
    double c1, c2, c3, A;        /* ak, a^2k, a^3k, a^4 */
    int n;
} ew_t;

typedef ew_t ema_t;
typedef ew_t wilder_t;

/* lanes = 1 runs the four chains from the fourth value after the seed on:
 * every EMA and Wilder average but MACD's (EMA, DEMA, TEMA, RSI, ATR, NATR,
 * Keltner, SuperTrend's ATR and ADX's final average). lanes = 0 keeps the
 * serial recurrence for good: MACD's three EMAs already run side by side,
 * and there the chains' extra multiplies cost more than they save. */
static inline void ew_init(ew_t *e, int n, double a, double k, int lanes) {
    e->n = n;
    e->from = lanes ? n + 3 : INT64_MAX;
    e->a = a;
    e->k = k;
    e->c1 = a * k;
    e->c2 = a * e->c1;
    e->c3 = a * e->c2;
    e->A = (a * a) * (a * a);
}

static inline void ema_init(ema_t *e, int n, int lanes) {
    double k = 2.0 / (n + 1.0);
    ew_init(e, n, 1.0 - k, k, lanes);
}

static inline void wilder_init(wilder_t *w, int n, int lanes) {
    ew_init(w, n, (n - 1.0) / n, 1.0 / n, lanes);
}

/* The serial recurrence: the seed, then prev*a + x*k. */
static inline double ew_serial(ew_t *e, double x, int commit) {
    double v;
    if (e->cnt >= e->n) v = e->val * e->a + x * e->k;
    else if (e->cnt == e->n - 1) v = (e->sum + x) / e->n;
    else v = NAN;
    if (commit) {
        if (e->cnt < e->n - 1) e->sum += x;
        else e->val = v;
        e->cnt++;
    }
    return v;
}

/* The chained value from the one four inputs back and inputs x0 (newest)
 * to x3: the one expression step and batch (ew_lane) both use. */
static inline double ew_chained(const ew_t *e, double back4, double x0, double x1, double x2,
                                double x3) {
    return e->A * back4 + ((e->k * x0 + e->c1 * x1) + (e->c2 * x2 + e->c3 * x3));
}

static inline double ew_step(ew_t *e, double x, int commit) {
    if (e->from == INT64_MAX) return ew_serial(e, x, commit);
    int64_t i = e->cnt;
    double v = i >= e->from ? ew_chained(e, e->last[i & 3], x, e->x1, e->x2, e->x3)
                            : ew_serial(e, x, 0);
    if (commit) {
        if (i < e->n - 1) e->sum += x;
        else e->val = v;
        e->last[i & 3] = v;
        e->x3 = e->x2;
        e->x2 = e->x1;
        e->x1 = x;
        e->cnt++;
    }
    return v;
}

static inline double ema_step(ema_t *e, double x, int commit) { return ew_step(e, x, commit); }
static inline double wilder_step(wilder_t *w, double x, int commit) { return ew_step(w, x, commit); }

/* Wilder running sum (ADX): the sum of n-1 values, then TA-Lib's s - s/n + x,
 * written s*((n-1)/n) + x (as the Wilder average is) so that no divide sits
 * on the chain from one bar to the next; the two differ in the last bit.
 * From the third value after the first whole sum on it runs as ew_t's four
 * chains (k = 1: v[i] = a^4 v[i-4] + ((x[i] + a x[i-1]) + (a^2 x[i-2] +
 * a^3 x[i-3]))), which batch runs side by side with ew_run: the three sums
 * were ADX's serial chains, a multiply and an add a bar each, bound by
 * their latency. A few ulps from the serial sum. */
typedef ew_t wsum_t;

static inline void wsum_init(wsum_t *w, int n) {
    ew_init(w, n, (n - 1.0) / n, 1.0, 1);
    w->from = n + 2;   /* v[i-4] .. v[i-1] all past the plain sum */
}

static inline double wsum_step(wsum_t *w, double x, int commit) {
    int64_t i = w->cnt;
    double v;
    if (i >= w->from) v = ew_chained(w, w->last[i & 3], x, w->x1, w->x2, w->x3);
    else if (i >= w->n - 1) v = w->val * w->a + x;
    else v = w->val + x;
    if (commit) {
        w->val = v;
        w->last[i & 3] = v;
        w->x3 = w->x2;
        w->x2 = w->x1;
        w->x1 = x;
        w->cnt++;
    }
    return i + 1 >= w->n ? v : NAN;
}

/* Sliding max over the last n values: a monotonic deque in a ring. For the
 * minimum, feed negated values. deque[1] is the max of everything after
 * deque[0], which is what lets a peek skip the value about to expire. */
typedef struct {
    double *val, *idx;
    int n, head, size;
    int64_t i;           /* index of the next value */
} mono_t;

static inline void mono_init(mono_t *m, double **mem, int n) {
    m->val = *mem;
    m->idx = *mem + n;
    *mem += 2 * n;
    m->n = n;
}

static inline double mono_step(mono_t *m, double x, int commit) {
    double best = x;
    int h = m->head, size = m->size;
    if (size > 0 && m->idx[h] <= (double)(m->i - m->n)) {
        h = h + 1 == m->n ? 0 : h + 1;
        size--;
    }
    if (size > 0 && m->val[h] > best) best = m->val[h];
    if (commit) {
        m->head = h;
        while (size > 0) {
            int back = h + size - 1;
            if (back >= m->n) back -= m->n;
            if (m->val[back] > x) break;
            size--;
        }
        int slot = h + size;
        if (slot >= m->n) slot -= m->n;
        m->val[slot] = x;
        m->idx[slot] = (double)m->i;
        m->size = size + 1;
        m->i++;
    }
    return best;
}

/* Population variance over a sliding window: Welford updates, re-anchored
 * with an exact two-pass sum every time the ring wraps. */
typedef struct {
    ring_t r;
    int64_t cnt;
    double mean, m2;
    double inv;   /* 1/n: a multiply where a divide would cost 2.5 cycles a bar */
    int n;
    int since;
} var_t;

static inline void var_init(var_t *s, double **mem, int n) {
    ring_init(&s->r, *mem, n);
    *mem += n;
    s->n = n;
    s->inv = 1.0 / n;
}

static inline void var_step(var_t *s, double x, int commit, double *mean_out, double *var_out) {
    double mean, m2;
    if (s->cnt < s->n) {
        double d = x - s->mean;
        mean = s->mean + d / (double)(s->cnt + 1);
        m2 = s->m2 + d * (x - mean);
    } else {
        double old = s->r.buf[s->r.pos];
        double d = x - old;
        mean = s->mean + d * s->inv;
        m2 = s->m2 + d * (x - mean + old - s->mean);
    }
    if (s->cnt >= s->n - 1) {
        *mean_out = mean;
        *var_out = m2 > 0.0 ? m2 * s->inv : 0.0;
    } else {
        *mean_out = NAN;
        *var_out = NAN;
    }
    if (commit) {
        s->mean = mean;
        s->m2 = m2;
        s->cnt++;
        s->since++;
        if (ring_push(&s->r, x) && s->since >= RESUM_EVERY) {
            s->since = 0;
            double t = exact_sum(s->r.buf, s->n) / s->n, q = 0.0;
            for (int i = 0; i < s->n; i++) q += (s->r.buf[i] - t) * (s->r.buf[i] - t);
            s->mean = t;
            s->m2 = q;
        }
    }
}

/* 100 * a / t, or 0 when t is 0 (RSI, MFI, DI, DX). The divide is done
 * unconditionally so that batch loops over it vectorise. */
static inline double pct(double a, double t) {
    double q = a / t;
    return t != 0.0 ? 100.0 * q : 0.0;
}

/* +DM and -DM from the up move of the high and the down move of the low:
 * the larger one if positive, the other 0 (branch-free: they are coin flips). */
static inline void directional_moves(double up, double down, double *pdm, double *mdm) {
    int minus = (down > 0) & (up < down), plus = !minus & (up > 0) & (up > down);
    *pdm = plus ? up : 0.0;
    *mdm = minus ? down : 0.0;
}

/* True range against the previous close: max of H-L, |H-C'|, |L-C'|. */
static inline double true_range(double h, double l, double pc) {
    double a = h - l, b = fabs(h - pc), d = fabs(l - pc), v = a;
    if (b > v) v = b;
    if (d > v) v = d;
    return v;
}

/* True range; the first bar has none (TA-Lib starts ATR at bar 1). */
typedef struct {
    double prev_close;
    int64_t cnt;
} tr_t;

static inline double tr_step(tr_t *t, double h, double l, double c, int commit) {
    double v = t->cnt > 0 ? true_range(h, l, t->prev_close) : NAN;
    if (commit) {
        t->prev_close = c;
        t->cnt++;
    }
    return v;
}

typedef struct {
    tr_t tr;
    wilder_t w;
} atr_t;

static inline double atr_step(atr_t *a, double h, double l, double c, int commit) {
    double tr = tr_step(&a->tr, h, l, c, commit);
    if (isnan(tr)) return NAN;
    return wilder_step(&a->w, tr, commit);
}

/* ---- the indicators --------------------------------------------------- */

typedef struct { sma_t s; } sma_s;
typedef struct { ema_t e; } ema_s;
typedef struct { ring_t r; int64_t cnt; double w, sum; int n; double div; } wma_s;
typedef struct { ema_t e1, e2, e3; } xema_s;      /* DEMA, TEMA */
typedef struct { double prev; int64_t cnt; wilder_t g, l; } rsi_s;
typedef struct { ema_t fast, slow, sig; int64_t cnt; int skip; } macd_s;
typedef struct { var_t v; double up, dn; } bb_s;
typedef struct { atr_t a; } atr_s;
typedef struct {
    double ph, pl;
    int64_t cnt;
    wsum_t dmp, dmm, tr;
    tr_t t;
    wilder_t adx;
} adx_s;
typedef struct { mono_t hi, lo; int64_t cnt; int fk; sma_t sk, sd; } stoch_s;
typedef struct { rsi_s rsi; mono_t hi, lo; int64_t kcnt; int fk; sma_t fd; } stochrsi_s;
typedef struct { rsum_t sum; int64_t cnt; int n; } cci_s;   /* sum.r holds the TPs */
typedef struct { double prev; int64_t cnt; rsum_t pos, neg; int n; } mfi_s;
typedef struct { double prev, lane[4], s1, s2, s3; int64_t cnt; } obv_s;   /* lanes: see rsum_t */
/* session: its index floor(t / anchor); lo, hi: its bounds [lo, hi) in t;
 * pv: the session's sum of (high + low + close) x volume (the 3 of the
 * typical price is divided out once, at the end). */
typedef struct { double session, lo, hi, pv, vol; int64_t cnt; double anchor; } vwap_s;
typedef struct { ring_t r; int64_t cnt; int n; } roc_s;
typedef struct { mono_t hi, lo; int64_t cnt; int n; } hl_s;    /* WILLR, Donchian */
typedef struct { ema_t e; atr_t a; double mult; } kelt_s;
typedef struct {
    atr_t a;
    double mult, fu, fl, prev_close;
    int dir, has;
} st_s;
typedef struct { var_t v; double nbdev; } std_s;
typedef struct { double prev; int64_t cnt; rsum_t rs; int n; double scale; } rv_s;   /* scale: annualize / n */

enum {
    K_SMA, K_EMA, K_WMA, K_DEMA, K_TEMA, K_RSI, K_MACD, K_BBANDS, K_ATR, K_NATR,
    K_ADX, K_STOCH, K_STOCHRSI, K_CCI, K_MFI, K_OBV, K_VWAP, K_ROC, K_WILLR,
    K_DONCHIAN, K_KELTNER, K_SUPERTREND, K_STDDEV, K_RVOL, K_COUNT
};

typedef union {
    sma_s sma; ema_s ema; wma_s wma; xema_s xema; rsi_s rsi; macd_s macd;
    bb_s bb; atr_s atr; adx_s adx; stoch_s stoch; stochrsi_s stochrsi;
    cci_s cci; mfi_s mfi; obv_s obv; vwap_s vwap; roc_s roc; hl_s hl;
    kelt_s kelt; st_s st; std_s std; rv_s rv;
} ta_state;

#define H VX_TA_HIGH
#define L VX_TA_LOW
#define C VX_TA_CLOSE
#define V VX_TA_VOLUME
#define T VX_TA_TIME
#define BIT(s) (1u << (s))
#define HLC (BIT(H) | BIT(L) | BIT(C))
/* The indicator table (ta.c), indexed by kind. */
extern const vx_ta_info VX_TA_KINDS[K_COUNT];

/* ---- steps ------------------------------------------------------------ */

static inline void step_sma(ta_state *u, const double *v, double *o, int commit) {
    o[0] = sma_step(&u->sma.s, v[C], commit);
}

static inline void step_ema(ta_state *u, const double *v, double *o, int commit) {
    o[0] = ema_step(&u->ema.e, v[C], commit);
}

static inline void step_wma(ta_state *u, const double *v, double *o, int commit) {
    wma_s *s = &u->wma;
    double x = v[C];
    if (s->n == 1) {
        o[0] = x;
        if (commit) s->cnt++;
        return;
    }
    double wsum = s->w + s->n * x;
    o[0] = s->cnt >= s->n - 1 ? wsum / s->div : NAN;
    if (!commit) return;
    if (s->cnt < s->n - 1) {
        s->w += (double)(s->cnt + 1) * x;
        s->sum += x;
    } else {
        double all = s->sum + x;
        s->w = wsum - all;
        s->sum = all - s->r.buf[s->r.pos];
    }
    ring_push(&s->r, x);
    s->cnt++;
}

static inline void step_dema(ta_state *u, const double *v, double *o, int commit) {
    double a = ema_step(&u->xema.e1, v[C], commit);
    double b = isnan(a) ? NAN : ema_step(&u->xema.e2, a, commit);
    o[0] = isnan(b) ? NAN : 2.0 * a - b;
}

static inline void step_tema(ta_state *u, const double *v, double *o, int commit) {
    double a = ema_step(&u->xema.e1, v[C], commit);
    double b = isnan(a) ? NAN : ema_step(&u->xema.e2, a, commit);
    double c = isnan(b) ? NAN : ema_step(&u->xema.e3, b, commit);
    o[0] = isnan(c) ? NAN : 3.0 * a - 3.0 * b + c;
}

static inline double rsi_value(rsi_s *s, double x, int commit) {
    double r = NAN;
    if (s->cnt > 0) {
        double d = x - s->prev;
        double g = wilder_step(&s->g, d > 0 ? d : 0.0, commit);
        double l = wilder_step(&s->l, d < 0 ? -d : 0.0, commit);
        if (!isnan(g)) {
            double t = g + l;
            r = pct(g, t);
        }
    }
    if (commit) {
        s->prev = x;
        s->cnt++;
    }
    return r;
}

static inline void step_rsi(ta_state *u, const double *v, double *o, int commit) {
    o[0] = rsi_value(&u->rsi, v[C], commit);
}

static inline void step_macd(ta_state *u, const double *v, double *o, int commit) {
    macd_s *s = &u->macd;
    double x = v[C];
    double slow = ema_step(&s->slow, x, commit);
    double fast = s->cnt >= s->skip ? ema_step(&s->fast, x, commit) : NAN;
    if (commit) s->cnt++;
    o[0] = o[1] = o[2] = NAN;
    if (isnan(slow) || isnan(fast)) return;
    double line = fast - slow;
    double sig = ema_step(&s->sig, line, commit);
    if (isnan(sig)) return;
    o[0] = line;
    o[1] = sig;
    o[2] = line - sig;
}

static inline void step_bbands(ta_state *u, const double *v, double *o, int commit) {
    double mean, var;
    var_step(&u->bb.v, v[C], commit, &mean, &var);
    double sd = sqrt(var);
    o[0] = mean + u->bb.up * sd;
    o[1] = mean;
    o[2] = mean - u->bb.dn * sd;
}

static inline void step_stddev(ta_state *u, const double *v, double *o, int commit) {
    double mean, var;
    var_step(&u->std.v, v[C], commit, &mean, &var);
    o[0] = sqrt(var) * u->std.nbdev;
}

static inline void step_atr(ta_state *u, const double *v, double *o, int commit) {
    o[0] = atr_step(&u->atr.a, v[H], v[L], v[C], commit);
}

static inline void step_natr(ta_state *u, const double *v, double *o, int commit) {
    double a = atr_step(&u->atr.a, v[H], v[L], v[C], commit);
    o[0] = isnan(a) ? NAN : v[C] != 0.0 ? (a / v[C]) * 100.0 : 0.0;
}

/* +DI, -DI and DX from the smoothed +DM (p), -DM (mm) and true range (t):
 * one divide for both DIs (100 / t), and DX from the sums themselves (t
 * cancels out of |-DI - +DI| / (+DI + -DI)) -- two divides a bar instead
 * of three, the most of ADX's batch time after its chains. Within an ulp
 * or two of TA-Lib's way. */
static inline void adx_dis(double p, double mm, double t, double *pdi, double *mdi, double *dx) {
    double r = 100.0 / t;
    *pdi = t != 0.0 ? p * r : 0.0;
    *mdi = t != 0.0 ? mm * r : 0.0;
    *dx = pct(fabs(mm - p), p + mm);
}

static inline void step_adx(ta_state *u, const double *v, double *o, int commit) {
    adx_s *s = &u->adx;
    double h = v[H], l = v[L];
    double tr = tr_step(&s->t, h, l, v[C], commit);
    o[0] = o[1] = o[2] = NAN;
    if (s->cnt > 0) {
        double up = h - s->ph, down = s->pl - l;
        double pdm, mdm;
        directional_moves(up, down, &pdm, &mdm);
        double sp = wsum_step(&s->dmp, pdm, commit);
        double sm = wsum_step(&s->dmm, mdm, commit);
        double st = wsum_step(&s->tr, tr, commit);
        if (!isnan(st)) {
            double pdi, mdi, dx;
            adx_dis(sp, sm, st, &pdi, &mdi, &dx);
            o[0] = wilder_step(&s->adx, dx, commit);
            o[1] = pdi;
            o[2] = mdi;
        }
    }
    if (commit) {
        s->ph = h;
        s->pl = l;
        s->cnt++;
    }
}

/* %K of value x against the window's extremes, as TA-Lib writes it (the
 * divide is done unconditionally so that batch loops over it vectorise). */
static inline double stoch_k(double x, double hh, double ll) {
    /* TA-Lib: (x - ll) / ((hh - ll) / 100); one divide instead of two */
    double diff = hh - ll, q = ((x - ll) * 100.0) / diff;
    return diff != 0.0 ? q : 0.0;
}

/* Williams %R of close c against the window's extremes. */
static inline double willr_of(double c, double hh, double ll) {
    /* TA-Lib: (hh - c) / ((hh - ll) / -100); one divide instead of two */
    double diff = hh - ll, q = ((hh - c) * -100.0) / diff;
    return diff != 0.0 ? q : 0.0;
}

static inline void step_stoch(ta_state *u, const double *v, double *o, int commit) {
    stoch_s *s = &u->stoch;
    double hh = mono_step(&s->hi, v[H], commit);
    double ll = -mono_step(&s->lo, -v[L], commit);
    double k = NAN, d = NAN;
    if (s->cnt >= s->fk - 1) {
        k = sma_step(&s->sk, stoch_k(v[C], hh, ll), commit);
        if (!isnan(k)) d = sma_step(&s->sd, k, commit);
    }
    if (commit) s->cnt++;
    o[0] = isnan(d) ? NAN : k;
    o[1] = d;
}

static inline void step_stochrsi(ta_state *u, const double *v, double *o, int commit) {
    stochrsi_s *s = &u->stochrsi;
    double r = rsi_value(&s->rsi, v[C], commit);
    o[0] = o[1] = NAN;
    if (isnan(r)) return;
    double hh = mono_step(&s->hi, r, commit);
    double ll = -mono_step(&s->lo, -r, commit);
    if (s->kcnt >= s->fk - 1) {
        double k = stoch_k(r, hh, ll);
        double d = sma_step(&s->fd, k, commit);
        if (!isnan(d)) {
            o[0] = k;
            o[1] = d;
        }
    }
    if (commit) s->kcnt++;
}

/* CCI from the window's mean and mean deviation's sum (dev, of |x - avg|). */
static inline double cci_of(double tp, double avg, double dev, int n) {
    double dist = tp - avg;
    return dist != 0.0 && dev != 0.0 ? dist / (0.015 * (dev / n)) : 0.0;
}

/* The mean deviation's sum adds |x - avg| oldest first into four
 * accumulators, the window's j-th value (from 0) into a[j & 3], then
 * (a[0] + a[1]) + (a[2] + a[3]): the order the batch kernel runs four bars
 * at a time in, one bar a lane, so stream and batch agree bit for bit. */
static inline void step_cci(ta_state *u, const double *v, double *o, int commit) {
    cci_s *s = &u->cci;
    double tp = (v[H] + v[L] + v[C]) / 3.0;
    int nz;
    double sum = rsum_peek(&s->sum, tp, &nz);
    o[0] = NAN;
    if (s->cnt >= s->n - 1) {
        double avg = sum / s->n, a[4] = {0.0, 0.0, 0.0, 0.0};
        /* the window: the n - 1 newest commits (from the slot after the
         * next one written, which tp replaces), then tp */
        const ring_t *r = &s->sum.r;
        int at = r->pos + 1 == s->n ? 0 : r->pos + 1;
        for (int j = 0; j < s->n - 1; j++) {
            a[j & 3] += fabs(r->buf[at] - avg);
            at = at + 1 == s->n ? 0 : at + 1;
        }
        a[(s->n - 1) & 3] += fabs(tp - avg);
        o[0] = cci_of(tp, avg, (a[0] + a[1]) + (a[2] + a[3]), s->n);
    }
    if (commit) {
        rsum_commit(&s->sum, tp, sum, nz);
        s->cnt++;
    }
}

static inline void step_mfi(ta_state *u, const double *v, double *o, int commit) {
    mfi_s *s = &u->mfi;
    /* high + low + close stands for the typical price: the index is a ratio
     * of flows, so the 3 cancels, and two divides a bar go */
    double tp = v[H] + v[L] + v[C];
    o[0] = NAN;
    if (s->cnt > 0) {
        double mf = tp * v[V];
        double up = tp > s->prev ? mf : 0.0, dn = tp < s->prev ? mf : 0.0;
        int zp, zn;
        double ps = rsum_peek(&s->pos, up, &zp), ns = rsum_peek(&s->neg, dn, &zn);
        if (s->cnt >= s->n) {
            double t = ps + ns;
            o[0] = pct(ps, t);
        }
        if (commit) {
            rsum_commit(&s->pos, up, ps, zp);
            rsum_commit(&s->neg, dn, ns, zn);
        }
    }
    if (commit) {
        s->prev = tp;
        s->cnt++;
    }
}

static inline void step_obv(ta_state *u, const double *v, double *o, int commit) {
    obv_s *s = &u->obv;
    double x = v[C];
    double up = x > s->prev ? v[V] : 0.0, down = x < s->prev ? v[V] : 0.0;
    double sv = s->cnt ? up - down : v[V];   /* up - down is exact */
    /* the running total as rsum_t's four chains, so batch can run them side by side */
    double obv = s->lane[s->cnt & 3] + ((sv + s->s1) + (s->s2 + s->s3));
    o[0] = obv;
    if (commit) {
        s->lane[s->cnt & 3] = obv;
        s->s3 = s->s2;
        s->s2 = s->s1;
        s->s1 = sv;
        s->prev = x;
        s->cnt++;
    }
}

static inline void step_vwap(ta_state *u, const double *v, double *o, int commit) {
    vwap_s *s = &u->vwap;
    double hlc = v[H] + v[L] + v[C], t = v[T];
    double pv = hlc * v[V], vol = v[V];
    /* the divide and floor only when t leaves the current session's bounds */
    int inside = t >= s->lo && t < s->hi;
    double session = inside ? s->session : floor(t / s->anchor);
    if (session == s->session) {
        pv += s->pv;
        vol += s->vol;
    }
    o[0] = vol > 0.0 ? pv / (3.0 * vol) : hlc / 3.0;
    if (commit) {
        if (!inside) {
            s->session = session;
            s->lo = session * s->anchor;
            s->hi = s->lo + s->anchor;
        }
        s->pv = pv;
        s->vol = vol;
        s->cnt++;
    }
}

static inline void step_roc(ta_state *u, const double *v, double *o, int commit) {
    roc_s *s = &u->roc;
    double x = v[C];
    o[0] = NAN;
    if (s->cnt >= s->n) {
        double old = s->r.buf[s->r.pos];
        o[0] = old != 0.0 ? ((x / old) - 1.0) * 100.0 : 0.0;
    }
    if (commit) {
        ring_push(&s->r, x);
        s->cnt++;
    }
}

static inline void step_willr(ta_state *u, const double *v, double *o, int commit) {
    hl_s *s = &u->hl;
    double hh = mono_step(&s->hi, v[H], commit);
    double ll = -mono_step(&s->lo, -v[L], commit);
    o[0] = NAN;
    if (s->cnt >= s->n - 1) o[0] = willr_of(v[C], hh, ll);
    if (commit) s->cnt++;
}

static inline void step_donchian(ta_state *u, const double *v, double *o, int commit) {
    hl_s *s = &u->hl;
    double hh = mono_step(&s->hi, v[H], commit);
    double ll = -mono_step(&s->lo, -v[L], commit);
    o[0] = o[1] = o[2] = NAN;
    if (s->cnt >= s->n - 1) {
        o[0] = hh;
        o[1] = (hh + ll) / 2.0;
        o[2] = ll;
    }
    if (commit) s->cnt++;
}

static inline void step_keltner(ta_state *u, const double *v, double *o, int commit) {
    kelt_s *s = &u->kelt;
    double mid = ema_step(&s->e, v[C], commit);
    double atr = atr_step(&s->a, v[H], v[L], v[C], commit);
    o[0] = o[1] = o[2] = NAN;
    if (isnan(mid) || isnan(atr)) return;
    o[0] = mid + s->mult * atr;
    o[1] = mid;
    o[2] = mid - s->mult * atr;
}

static inline void step_supertrend(ta_state *u, const double *v, double *o, int commit) {
    st_s *s = &u->st;
    double c = v[C];
    double atr = atr_step(&s->a, v[H], v[L], c, commit);
    o[0] = o[1] = NAN;
    if (!isnan(atr)) {
        double hl2 = (v[H] + v[L]) / 2.0;
        double bu = hl2 + s->mult * atr, bl = hl2 - s->mult * atr;
        double fu = bu, fl = bl;
        int dir = -1;    /* the first bar starts in a downtrend (upper band) */
        if (s->has) {
            if (!(bu < s->fu || s->prev_close > s->fu)) fu = s->fu;
            if (!(bl > s->fl || s->prev_close < s->fl)) fl = s->fl;
            if (s->dir < 0) dir = c > fu ? 1 : -1;
            else dir = c < fl ? -1 : 1;
        }
        o[0] = dir > 0 ? fl : fu;
        o[1] = dir;
        if (commit) {
            s->fu = fu;
            s->fl = fl;
            s->dir = dir;
            s->has = 1;
        }
    }
    if (commit) s->prev_close = c;
}

static inline void step_rvol(ta_state *u, const double *v, double *o, int commit) {
    rv_s *s = &u->rv;
    double x = v[C];
    o[0] = NAN;
    if (s->cnt > 0) {
        double r = log1_mvec(x / s->prev);
        int nz;
        double sum = rsum_peek(&s->rs, r * r, &nz);
        if (s->cnt >= s->n) o[0] = sqrt(sum > 0.0 ? sum * s->scale : 0.0);
        if (commit) rsum_commit(&s->rs, r * r, sum, nz);
    }
    if (commit) {
        s->prev = x;
        s->cnt++;
    }
}

/* ---- input checks ------------------------------------------------------ */


static const char *const SLOT_NAMES[VX_TA_NSLOTS] = {"high", "low", "close", "volume", "time"};

/* 0 if the bar is acceptable; otherwise the slot that is not. */
static inline int bad_slot(int kind, unsigned mask, const double *v) {
    for (int i = 0; i < VX_TA_NSLOTS; i++)
        if (((mask >> i) & 1u) && !isfinite(v[i])) return i + 1;
    if (((mask >> V) & 1u) && v[V] < 0) return V + 1;
    if (kind == K_RVOL && !(v[C] > 0)) return C + 1;
    return 0;
}
/* Fill err with why slot `slot` of bar `index` (-1: a stream update) is refused. */
void vx_ta_describe_bad(int kind, int slot, const double *v, int64_t index, char *err, size_t errlen);

/* "sma(20)": an indicator call as the user wrote it, for errors. */
void vx_ta_format_call(int kind, const double *p, char *buf, size_t len);

typedef struct {
    vx_ta_stream pub;
    double params[VX_TA_MAXPARAM];
    size_t nmem;
    ta_state u;
    double mem[];
} ta_impl;

/* A stream's allocation with its state initialised (the batch entry runs
 * its warm-up through the same state); NULL with err on bad params. */
ta_impl *vx_ta_impl_new(int kind, const double *params, char *err, size_t errlen);

#endif
