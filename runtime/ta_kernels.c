/*
 * ta_kernels.c — the batch kernels: one pass per indicator over whole
 * arrays, written for the vectoriser. This file alone is built with -O3 and
 * ISA clones (see the Makefile); the steps it shares with the streams are in
 * ta_impl.h. See ta.h for the contract.
 */
#include "ta_impl.h"

/* ---- batch ---------------------------------------------------------------- */

/* Batch runs go block by block: the block's inputs are checked with a
 * branch-free scan (the per-bar check runs only to name a bad bar), then the
 * block is computed while it is still in L1. 256 bars: short enough that
 * the hardware's prefetch streams run ahead across blocks. With 1024 a
 * 10M-bar run alternated between a memory phase and a compute phase (SMA
 * took 2.0x the copy time). The block's next one used to be prefetched by
 * software too; on huge-page series that only got in the way (see
 * check_block). */
enum { BLOCK = 256 };

/* Whether every x is below +inf and above lo (or at it, when `inclusive`):
 * one pass of compares that vectorises, and NaN fails both. */
static inline int all_in_range(const double *x, size_t n, double lo, int inclusive) {
    long long bad = 0;   /* 64-bit, as the compares: the vectorised ORs need no narrowing */
    if (inclusive)
        for (size_t i = 0; i < n; i++) bad |= !(x[i] >= lo) | !(x[i] < HUGE_VAL);
    else
        for (size_t i = 0; i < n; i++) bad |= !(x[i] > lo) | !(x[i] < HUGE_VAL);
    return !bad;
}

/* Whether x is NaN or an infinity, as a 64-bit 0/1 for ORs that vectorise
 * (the predicate all_in_range and check_block apply to prices). */
static inline long long not_finite(double x) {
    return !(x > -HUGE_VAL) | !(x < HUGE_VAL);
}

/* Whether bars [b0, b1) of the inputs in mask are what the indicator takes;
 * if not, err names the first bad bar. (No prefetch of the next block here:
 * series are on huge pages from 2 MB up (vx_ta_alloc), where the hardware's
 * streams keep up; asking for a block at once made long series 10-40%
 * slower on this project's build machine, ATR, MFI and VWAP the most.) */
static TA_KERNEL int check_block(int kind, unsigned mask, const double *const *in, size_t b0,
                                 size_t b1, char *err, size_t errlen) {
    int bad = 0;
    for (int j = 0; j < VX_TA_NSLOTS; j++) {   /* finite; volume >= 0; rvol's prices > 0 */
        if (!((mask >> j) & 1u)) continue;
        if (j == V) bad |= !all_in_range(in[j] + b0, b1 - b0, 0.0, 1);
        else if (j == C && kind == K_RVOL) bad |= !all_in_range(in[j] + b0, b1 - b0, 0.0, 0);
        else bad |= !all_in_range(in[j] + b0, b1 - b0, -HUGE_VAL, 0);
    }
    if (!bad) return 0;
    for (size_t i = b0; i < b1; i++) {
        double v[VX_TA_NSLOTS] = {0};
        for (int j = 0; j < VX_TA_NSLOTS; j++)
            if ((mask >> j) & 1u) v[j] = in[j][i];
        int slot = bad_slot(kind, mask, v);
        if (slot) {
            vx_ta_describe_bad(kind, slot - 1, v, (int64_t)i, err, errlen);
            return -1;
        }
    }
    return 0;
}

/* The state is copied into a local for the loop: the output stores could
 * otherwise alias it, and every field would round-trip through memory. */
#define BATCH(KIND, STEP, MASK, NOUT)                                              \
    case KIND: {                                                                   \
        ta_state local = *u0, *u = &local;                                        \
        for (size_t b0 = i0; b0 < i1 && !rc; b0 += BLOCK) {                        \
            size_t b1 = i1 - b0 < BLOCK ? i1 : b0 + BLOCK;                         \
            rc = check_block(KIND, MASK, in, b0, b1, err, errlen);                \
            for (size_t i = b0; i < b1 && !rc; i++) {                              \
                double v[VX_TA_NSLOTS] = {0}, o[VX_TA_MAXOUT];                     \
                for (int j = 0; j < VX_TA_NSLOTS; j++)                             \
                    if (((MASK) >> j) & 1u) v[j] = in[j][i];                       \
                STEP(u, v, o, 1);                                                  \
                for (int k = 0; k < (NOUT); k++) out[k][i] = o[k];                 \
            }                                                                      \
        }                                                                          \
        *u0 = local;                                                               \
        break;                                                                     \
    }

/* The generic batch: bars [i0, i1) through the indicator's own step. */
static int run_batch(int kind, ta_state *u0, size_t i0, size_t i1, const double *const *in,
                     double *const *out, char *err, size_t errlen) {
    int rc = 0;
    switch (kind) {
    BATCH(K_SMA, step_sma, BIT(C), 1)
    BATCH(K_EMA, step_ema, BIT(C), 1)
    BATCH(K_WMA, step_wma, BIT(C), 1)
    BATCH(K_DEMA, step_dema, BIT(C), 1)
    BATCH(K_TEMA, step_tema, BIT(C), 1)
    BATCH(K_RSI, step_rsi, BIT(C), 1)
    BATCH(K_MACD, step_macd, BIT(C), 3)
    BATCH(K_BBANDS, step_bbands, BIT(C), 3)
    BATCH(K_ATR, step_atr, HLC, 1)
    BATCH(K_NATR, step_natr, HLC, 1)
    BATCH(K_ADX, step_adx, HLC, 3)
    BATCH(K_STOCH, step_stoch, HLC, 2)
    BATCH(K_STOCHRSI, step_stochrsi, BIT(C), 2)
    BATCH(K_CCI, step_cci, HLC, 1)
    BATCH(K_MFI, step_mfi, HLC | BIT(V), 1)
    BATCH(K_OBV, step_obv, BIT(C) | BIT(V), 1)
    BATCH(K_VWAP, step_vwap, HLC | BIT(V) | BIT(T), 1)
    BATCH(K_ROC, step_roc, BIT(C), 1)
    BATCH(K_WILLR, step_willr, HLC, 1)
    BATCH(K_DONCHIAN, step_donchian, BIT(H) | BIT(L), 3)
    BATCH(K_KELTNER, step_keltner, HLC, 3)
    BATCH(K_SUPERTREND, step_supertrend, HLC, 2)
    BATCH(K_STDDEV, step_stddev, BIT(C), 1)
    BATCH(K_RVOL, step_rvol, BIT(C), 1)
    default: rc = -1; break;
    }
    return rc;
}

/* ---- batch kernels -------------------------------------------------------
 *
 * The generic loop above pays for the step's warm-up branches and its state
 * struct on every bar. A kernel runs only the warm-up through it, then a
 * steady-state loop over locals that does the step's arithmetic in the step's
 * order, so batch and stream still agree bit for bit. Where a kernel needs a
 * different order to run fast (the EMAs and Wilder averages but MACD's, OBV
 * and the window sums run four interleaved chains), the step uses that order
 * too. Every kernel checks its inputs a block at a time, before computing
 * that block, or in the pass that reads them (SMA, MFI, OBV, CCI, ADX, and
 * the window extremes of Stochastic, Williams %R and Donchian); there a bad
 * block goes to check_block afterwards, to name the bar. */

#define KERNEL_ARGS ta_state *u, const double *p, size_t n, const double *const *in, \
                    double *const *out, char *err, size_t errlen

/* for (i in [from, n)) { body }, with each block's inputs checked first. */
#define STEADY(KIND, MASK, FROM)                                                   \
    for (size_t b0 = (FROM), b1; b0 < n; b0 = b1)                                  \
        if ((b1 = n - b0 < BLOCK ? n : b0 + BLOCK),                                \
            check_block(KIND, MASK, in, b0, b1, err, errlen))                      \
            return -1;                                                             \
        else                                                                       \
            for (size_t i = b0; i < b1; i++)

/* Bars [0, min(w, n)) through the generic loop; returns where steady starts
 * (n when there is nothing left), or (size_t)-1 on bad input. */
static size_t warm_up(int kind, ta_state *u, size_t w, size_t n, const double *const *in,
                      double *const *out, char *err, size_t errlen) {
    if (w > n) w = n;
    return run_batch(kind, u, 0, w, in, out, err, errlen) ? (size_t)-1 : w;
}

#define WARM(KIND, W)                                                              \
    size_t w = warm_up(KIND, u, (W), n, in, out, err, errlen);                     \
    if (w == (size_t)-1) return -1;                                                \
    if (w == n) return 0

/* The four chains of ew_t over inputs x[0..m) of chain index i0 on (at least
 * e->from), x[-3..-1] being the three inputs before. Same expressions as
 * ew_step, as one AVX2 quad or as SSE2 pairs (chains 0,1 and 2,3) once
 * i0 + k is 0 mod 4. */
static inline double ew_lane(ew_t *e, int64_t i, const double *x) {
    double *l = &e->last[i & 3];
    return *l = ew_chained(e, *l, x[0], x[-1], x[-2], x[-3]);
}

static TA_AVX2 size_t ew_quads_avx2(ew_t *e, const double *x, size_t k, size_t m, double *out) {
    const __m256d K = _mm256_set1_pd(e->k), C1 = _mm256_set1_pd(e->c1), C2 = _mm256_set1_pd(e->c2),
                  C3 = _mm256_set1_pd(e->c3), A = _mm256_set1_pd(e->A);
    __m256d L = _mm256_loadu_pd(e->last);
    for (; k + 4 <= m; k += 4) {
        const double *y = x + k;
        __m256d t = _mm256_add_pd(_mm256_add_pd(_mm256_mul_pd(K, _mm256_loadu_pd(y)),
                                                _mm256_mul_pd(C1, _mm256_loadu_pd(y - 1))),
                                  _mm256_add_pd(_mm256_mul_pd(C2, _mm256_loadu_pd(y - 2)),
                                                _mm256_mul_pd(C3, _mm256_loadu_pd(y - 3))));
        L = _mm256_add_pd(_mm256_mul_pd(A, L), t);
        _mm256_storeu_pd(out + k, L);
    }
    _mm256_storeu_pd(e->last, L);
    return k;
}

/* ew_run from input k on, the inputs before it done: i0 + k is 0 mod 4
 * (or k is m). */
static void ew_run_from(ew_t *e, int64_t i0, const double *x, size_t k, size_t m, double *out) {
    if (k + 4 <= m && vx_ta_avx2()) k = ew_quads_avx2(e, x, k, m, out);
    if (k + 4 <= m) {
        const __m128d K = _mm_set1_pd(e->k), C1 = _mm_set1_pd(e->c1), C2 = _mm_set1_pd(e->c2),
                      C3 = _mm_set1_pd(e->c3), A = _mm_set1_pd(e->A);
        __m128d L01 = _mm_loadu_pd(e->last), L23 = _mm_loadu_pd(e->last + 2);
        for (; k + 4 <= m; k += 4) {
            const double *y = x + k;
            __m128d y0 = _mm_loadu_pd(y), y1 = _mm_loadu_pd(y - 1), y2 = _mm_loadu_pd(y - 2),
                    y3 = _mm_loadu_pd(y - 3), y4 = _mm_loadu_pd(y + 2), y5 = _mm_loadu_pd(y + 1);
            L01 = _mm_add_pd(_mm_mul_pd(A, L01),
                             _mm_add_pd(_mm_add_pd(_mm_mul_pd(K, y0), _mm_mul_pd(C1, y1)),
                                        _mm_add_pd(_mm_mul_pd(C2, y2), _mm_mul_pd(C3, y3))));
            L23 = _mm_add_pd(_mm_mul_pd(A, L23),
                             _mm_add_pd(_mm_add_pd(_mm_mul_pd(K, y4), _mm_mul_pd(C1, y5)),
                                        _mm_add_pd(_mm_mul_pd(C2, y0), _mm_mul_pd(C3, y1))));
            _mm_storeu_pd(out + k, L01);
            _mm_storeu_pd(out + k + 2, L23);
        }
        _mm_storeu_pd(e->last, L01);
        _mm_storeu_pd(e->last + 2, L23);
    }
    for (; k < m; k++) out[k] = ew_lane(e, i0 + (int64_t)k, x + k);
    if (m) {   /* as the step leaves it */
        e->x1 = x[(ptrdiff_t)m - 1], e->x2 = x[(ptrdiff_t)m - 2], e->x3 = x[(ptrdiff_t)m - 3];
        e->val = out[m - 1];
        e->cnt = i0 + (int64_t)m;
    }
}

static void ew_run(ew_t *e, int64_t i0, const double *x, size_t m, double *out) {
    size_t k = 0;
    for (; k < m && ((i0 + (int64_t)k) & 3); k++) out[k] = ew_lane(e, i0 + (int64_t)k, x + k);
    ew_run_from(e, i0, x, k, m, out);
}

/* A chain's next inputs go to buf + 3; buf[0..2] are its last three inputs. */
static double *ew_inputs(const ew_t *e, double *buf) {
    buf[0] = e->x3, buf[1] = e->x2, buf[2] = e->x1;
    return buf + 3;
}

static TA_KERNEL int k_ema(KERNEL_ARGS) {
    WARM(K_EMA, (size_t)p[0] + 3);
    ema_t *e = &u->ema.e;
    for (size_t b0 = w, b1; b0 < n; b0 = b1) {
        b1 = n - b0 < BLOCK ? n : b0 + BLOCK;
        if (check_block(K_EMA, BIT(C), in, b0, b1, err, errlen)) return -1;
        ew_run(e, (int64_t)b0, in[C] + b0, b1 - b0, out[0] + b0);
    }
    return 0;
}

/* RSI: the two Wilder chains, then the ratio in a pass that vectorises. */
static TA_KERNEL int k_rsi(KERNEL_ARGS) {
    WARM(K_RSI, (size_t)p[0] + 4);   /* the chains' index is the bar's - 1 */
    wilder_t *g = &u->rsi.g, *l = &u->rsi.l;
    const double *x = in[C];
    double *o = out[0], gb[BLOCK + 3], lb[BLOCK + 3], lt[BLOCK];
    for (size_t b0 = w, b1; b0 < n; b0 = b1) {
        b1 = n - b0 < BLOCK ? n : b0 + BLOCK;
        if (check_block(K_RSI, BIT(C), in, b0, b1, err, errlen)) return -1;
        size_t m = b1 - b0;
        double *gain = ew_inputs(g, gb), *loss = ew_inputs(l, lb);
        for (size_t j = 0; j < m; j++) {
            double d = x[b0 + j] - x[b0 + j - 1];
            gain[j] = d > 0 ? d : 0.0;
            loss[j] = d < 0 ? -d : 0.0;
        }
        ew_run(g, (int64_t)b0 - 1, gain, m, o + b0);
        ew_run(l, (int64_t)b0 - 1, loss, m, lt);
        for (size_t j = 0; j < m; j++) o[b0 + j] = pct(o[b0 + j], o[b0 + j] + lt[j]);
    }
    return 0;
}

/* ATR and NATR (its divide in a pass that vectorises). */
static TA_KERNEL int atr_like(int kind, KERNEL_ARGS) {
    WARM(kind, (size_t)p[0] + 4);   /* the chain's index is the bar's - 1 */
    wilder_t *wl = &u->atr.a.w;
    const double *h = in[H], *l = in[L], *c = in[C];
    double *o = out[0], buf[BLOCK + 3];
    for (size_t b0 = w, b1; b0 < n; b0 = b1) {
        b1 = n - b0 < BLOCK ? n : b0 + BLOCK;
        if (check_block(kind, HLC, in, b0, b1, err, errlen)) return -1;
        size_t m = b1 - b0;
        double *tr = ew_inputs(wl, buf);
        for (size_t j = 0; j < m; j++) tr[j] = true_range(h[b0 + j], l[b0 + j], c[b0 + j - 1]);
        ew_run(wl, (int64_t)b0 - 1, tr, m, o + b0);
        if (kind == K_NATR)
            for (size_t i = b0; i < b1; i++) {
                double q = o[i] / c[i];
                o[i] = c[i] != 0.0 ? q * 100.0 : 0.0;
            }
    }
    return 0;
}

static int k_atr(KERNEL_ARGS) { return atr_like(K_ATR, u, p, n, in, out, err, errlen); }
static int k_natr(KERNEL_ARGS) { return atr_like(K_NATR, u, p, n, in, out, err, errlen); }

/* SuperTrend: the ATR by the four chains, the basic bands in a pass that
 * vectorises, then the trail, whose only chain is compares and selects. */
static TA_KERNEL int k_supertrend(KERNEL_ARGS) {
    WARM(K_SUPERTREND, (size_t)p[0] + 4);   /* the ATR chain's index is the bar's - 1 */
    st_s *s = &u->st;
    const double mult = s->mult, *h = in[H], *l = in[L], *c = in[C];
    double fu = s->fu, fl = s->fl, pc = s->prev_close;
    int up = s->dir > 0;
    double buf[BLOCK + 3], BU[BLOCK], BL[BLOCK];
    for (size_t b0 = w, b1; b0 < n; b0 = b1) {
        b1 = n - b0 < BLOCK ? n : b0 + BLOCK;
        if (check_block(K_SUPERTREND, HLC, in, b0, b1, err, errlen)) return -1;
        size_t m = b1 - b0;
        double *tr = ew_inputs(&s->a.w, buf);
        for (size_t j = 0; j < m; j++) tr[j] = true_range(h[b0 + j], l[b0 + j], c[b0 + j - 1]);
        ew_run(&s->a.w, (int64_t)b0 - 1, tr, m, BU);
        for (size_t j = 0; j < m; j++) {
            double hl2 = (h[b0 + j] + l[b0 + j]) / 2.0, d = mult * BU[j];
            BU[j] = hl2 + d;
            BL[j] = hl2 - d;
        }
        for (size_t j = 0; j < m; j++) {
            double x = c[b0 + j], bu = BU[j], bl = BL[j];
            fu = bu < fu || pc > fu ? bu : fu;
            fl = bl > fl || pc < fl ? bl : fl;
            up = up ? !(x < fl) : x > fu;   /* branch-free: the flips are unpredictable */
            out[0][b0 + j] = up ? fl : fu;
            out[1][b0 + j] = up ? 1.0 : -1.0;
            pc = x;
        }
    }
    return 0;
}

/* DEMA and TEMA: each EMA by the four chains over the one before's output
 * (its chain index is the bar's - (p-1) per EMA before it), then the
 * combination in a pass that vectorises. */
static int xema_run(int kind, KERNEL_ARGS) {
    size_t per = (size_t)p[0], deep = kind == K_TEMA ? 3 : 2;
    WARM(kind, deep * (per - 1) + 4);   /* the last EMA's chains start at its input per + 3 */
    xema_s *s = &u->xema;
    double b1[BLOCK + 3], b2[BLOCK + 3], E3[BLOCK], *o = out[0];
    for (size_t b0 = w, bend; b0 < n; b0 = bend) {
        bend = n - b0 < BLOCK ? n : b0 + BLOCK;
        if (check_block(kind, BIT(C), in, b0, bend, err, errlen)) return -1;
        size_t m = bend - b0;
        double *E1 = ew_inputs(&s->e2, b1), *E2 = ew_inputs(&s->e3, b2);
        ew_run(&s->e1, (int64_t)b0, in[C] + b0, m, E1);
        ew_run(&s->e2, (int64_t)(b0 - (per - 1)), E1, m, E2);
        if (kind == K_DEMA) {
            for (size_t j = 0; j < m; j++) o[b0 + j] = 2.0 * E1[j] - E2[j];
            continue;
        }
        ew_run(&s->e3, (int64_t)(b0 - 2 * (per - 1)), E2, m, E3);
        for (size_t j = 0; j < m; j++) o[b0 + j] = 3.0 * E1[j] - 3.0 * E2[j] + E3[j];
    }
    return 0;
}

static TA_KERNEL int k_dema(KERNEL_ARGS) { return xema_run(K_DEMA, u, p, n, in, out, err, errlen); }
static TA_KERNEL int k_tema(KERNEL_ARGS) { return xema_run(K_TEMA, u, p, n, in, out, err, errlen); }

/* MACD keeps the serial recurrence: its three EMAs already run side by side,
 * and the four chains (measured) made it 5-10% slower. */
static TA_KERNEL int k_macd(KERNEL_ARGS) {
    (void)p;
    const macd_s *m = &u->macd;
    size_t slow = (size_t)m->slow.n, from = slow - 1 + (size_t)m->sig.n;
    WARM(K_MACD, from > slow ? from : slow);
    const double as = m->slow.a, ks = m->slow.k, af = m->fast.a, kf = m->fast.k;
    const double ag = m->sig.a, kg = m->sig.k, *x = in[C];
    double s = m->slow.val, f = m->fast.val, g = m->sig.val;
    STEADY(K_MACD, BIT(C), w) {
        s = s * as + x[i] * ks;
        f = f * af + x[i] * kf;
        double line = f - s;
        g = g * ag + line * kg;
        out[0][i] = line;
        out[1][i] = g;
        out[2][i] = line - g;
    }
    return 0;
}

/* Keltner: the EMA of closes and the ATR each by the four chains, then the
 * bands in a pass that vectorises. */
static TA_KERNEL int k_keltner(KERNEL_ARGS) {
    size_t ep = (size_t)p[0] + 3, ap = (size_t)p[2] + 4;   /* where both run their chains */
    WARM(K_KELTNER, ep > ap ? ep : ap);
    kelt_s *s = &u->kelt;
    const double mult = s->mult, *h = in[H], *l = in[L], *c = in[C];
    double buf[BLOCK + 3];
    for (size_t b0 = w, b1; b0 < n; b0 = b1) {
        b1 = n - b0 < BLOCK ? n : b0 + BLOCK;
        if (check_block(K_KELTNER, HLC, in, b0, b1, err, errlen)) return -1;
        size_t m = b1 - b0;
        double *up = out[0] + b0, *mid = out[1] + b0, *dn = out[2] + b0;
        ew_run(&s->e, (int64_t)b0, c + b0, m, mid);
        double *tr = ew_inputs(&s->a.w, buf);
        for (size_t j = 0; j < m; j++) tr[j] = true_range(h[b0 + j], l[b0 + j], c[b0 + j - 1]);
        ew_run(&s->a.w, (int64_t)b0 - 1, tr, m, dn);   /* the ATR, in dn until the bands */
        for (size_t j = 0; j < m; j++) {
            double d = mult * dn[j];
            up[j] = mid[j] + d;
            dn[j] = mid[j] - d;
        }
    }
    return 0;
}

/* ADX's three Wilder sums over the same bars: ew_run for each, but in the
 * AVX2 quads side by side in one loop (their constants are the same), so
 * that the three chains' latencies overlap instead of adding up. */
static TA_AVX2 size_t ew3_quads_avx2(ew_t *const e[3], const double *const x[3], size_t k,
                                     size_t m, double *const out[3]) {
    const ew_t *f = e[0];
    const __m256d K = _mm256_set1_pd(f->k), C1 = _mm256_set1_pd(f->c1), C2 = _mm256_set1_pd(f->c2),
                  C3 = _mm256_set1_pd(f->c3), A = _mm256_set1_pd(f->A);
    __m256d L[3];
    for (int q = 0; q < 3; q++) L[q] = _mm256_loadu_pd(e[q]->last);
    for (; k + 4 <= m; k += 4) {
        for (int q = 0; q < 3; q++) {
            const double *y = x[q] + k;
            __m256d t = _mm256_add_pd(_mm256_add_pd(_mm256_mul_pd(K, _mm256_loadu_pd(y)),
                                                    _mm256_mul_pd(C1, _mm256_loadu_pd(y - 1))),
                                      _mm256_add_pd(_mm256_mul_pd(C2, _mm256_loadu_pd(y - 2)),
                                                    _mm256_mul_pd(C3, _mm256_loadu_pd(y - 3))));
            L[q] = _mm256_add_pd(_mm256_mul_pd(A, L[q]), t);
            _mm256_storeu_pd(out[q] + k, L[q]);
        }
    }
    for (int q = 0; q < 3; q++) _mm256_storeu_pd(e[q]->last, L[q]);
    return k;
}

static void ew3_run(ew_t *const e[3], int64_t i0, const double *const x[3], size_t m,
                    double *const out[3]) {
    size_t k = 0;
    for (; k < m && ((i0 + (int64_t)k) & 3); k++)
        for (int q = 0; q < 3; q++) out[q][k] = ew_lane(e[q], i0 + (int64_t)k, x[q] + k);
    if (k + 4 <= m && vx_ta_avx2()) k = ew3_quads_avx2(e, x, k, m, out);
    for (int q = 0; q < 3; q++)   /* the rest, and the state as the step leaves it */
        ew_run_from(e[q], i0, x[q], k, m, out[q]);
}

/* ADX: the moves, true ranges and the check in a pass that vectorises, the
 * three Wilder sums side by side (ew3_run), +DI/-DI/DX in a pass that
 * vectorises, then the Wilder average of DX. */
static TA_KERNEL int k_adx(KERNEL_ARGS) {
    size_t per = (size_t)p[0];
    WARM(K_ADX, 2 * per + 3);   /* the ADX chain's index is the bar's - per, the sums' the bar's - 1 */
    adx_s *s = &u->adx;
    const double *h = in[H], *l = in[L], *c = in[C];
    double pb[BLOCK + 3], mb[BLOCK + 3], tb[BLOCK + 3], db[BLOCK + 3];
    double P[BLOCK], M[BLOCK], T[BLOCK];
    for (size_t b0 = w, b1; b0 < n; b0 = b1) {
        b1 = n - b0 < BLOCK ? n : b0 + BLOCK;
        size_t m = b1 - b0;
        int64_t i0 = (int64_t)b0 - 1;
        double *xp = ew_inputs(&s->dmp, pb), *xm = ew_inputs(&s->dmm, mb), *xt = ew_inputs(&s->tr, tb);
        long long bad = 0;   /* 64-bit: see all_in_range */
        for (size_t j = 0; j < m; j++) {   /* the moves, true ranges and the check: vectorises */
            size_t i = b0 + j;
            directional_moves(h[i] - h[i - 1], l[i - 1] - l[i], xp + j, xm + j);
            xt[j] = true_range(h[i], l[i], c[i - 1]);
            bad |= not_finite(h[i]) | not_finite(l[i]) | not_finite(c[i]);
        }
        if (bad && check_block(K_ADX, HLC, in, b0, b1, err, errlen)) return -1;
        ew3_run((ew_t *const[3]){&s->dmp, &s->dmm, &s->tr}, i0, (const double *const[3]){xp, xm, xt},
                m, (double *const[3]){P, M, T});
        double *dx = ew_inputs(&s->adx, db);
        for (size_t j = 0; j < m; j++) adx_dis(P[j], M[j], T[j], out[1] + b0 + j, out[2] + b0 + j, dx + j);
        ew_run(&s->adx, (int64_t)b0 - (int64_t)per, dx, m, out[0] + b0);
    }
    return 0;
}

/* Running sums with rsum_t's exact semantics (the four chains, the non-zero
 * count, the exact re-sums), called a block at a time: x[k] (k < m <= BLOCK)
 * is push j0 + k (pushes count from 0), x[k - p] must be readable once that
 * push is p or more, and sums[k] gets the sum after it. */
typedef struct {
    double lane[4];   /* as rsum_t: the sum after push j at lane[j & 3] */
    double d[3];      /* d of the last three pushes, newest first */
    long long nz;     /* non-zero members of the window; -1: not kept since */
    size_t resum_at;  /* the next push whose sum is re-taken exactly */
    int left;         /* exact pushes left in this re-sum, counting resum_at */
} run_sum;

/* The push of the first wrap once RESUM_EVERY pushes follow push `base`. */
static size_t next_resum(size_t base, size_t p) {
    return (base + RESUM_EVERY + p - 1) / p * p - 1;
}

enum { SEGMENT = 256 };   /* run_sums works in segments of this many pushes */

/* What a running sum's output gets: the sum times scale (skipped when scale
 * is 1, which changes nothing); with root, the square root of that where
 * the sum is above 0, else 0 (realized volatility); with num, the percentage
 * pct(num[k], num[k] + that) (MFI: the positive flows' sum over both, num
 * running alongside the outputs, which it may be). In the same loop as the
 * adds, so that the roots and divides overlap them. */
typedef struct {
    double scale;
    int root;
    const double *num;
} sum_out;

/* f for the outputs from index k on. */
static inline sum_out sum_out_from(sum_out f, size_t k) {
    if (f.num) f.num += k;
    return f;
}

/* Pushes j .. j+m-1 on the chains, none of them a re-sum. e[k + 3] is d of
 * push j+k (e[0..2] the three before), so the sum after push j+k is
 * lane[(j+k) & 3] + ((e[k+3] + e[k+2]) + (e[k+1] + e[k])), or 0 where mk[k]
 * is 0 (mk NULL: nowhere); sums[k] gets it as f says. Scalar up to a push
 * that is 0 mod 4, then the chains as SSE2 pairs (0,1) and (2,3), or as one
 * AVX2 quad, with the same operations in the same order. */
static inline void lane_step(double *lane, size_t j, const double *e, long long mk, sum_out f,
                             size_t k, double *sums) {
    double t = lane[j & 3] + ((e[3] + e[2]) + (e[1] + e[0]));
    if (!mk) t = 0.0;
    lane[j & 3] = t;
    double v = f.scale != 1.0 ? t * f.scale : t;
    if (f.root) v = sqrt(t > 0.0 ? v : 0.0);
    sums[k] = f.num ? pct(f.num[k], f.num[k] + v) : v;
}

static TA_AVX2 void lanes_run_avx2(double *lane, size_t j, const double *e, const long long *mk,
                                   size_t m, sum_out f, double *sums) {
    size_t k = 0;
    for (; k < m && ((j + k) & 3); k++) lane_step(lane, j + k, e + k, mk ? mk[k] : -1, f, k, sums);
    if (k + 4 <= m) {
        __m256d L = _mm256_loadu_pd(lane), S = _mm256_set1_pd(f.scale), zero = _mm256_setzero_pd();
        int scaled = f.scale != 1.0;
        for (; k + 4 <= m; k += 4) {
            const double *g = e + k;
            __m256d s32 = _mm256_add_pd(_mm256_loadu_pd(g + 3), _mm256_loadu_pd(g + 2));
            L = _mm256_add_pd(L, _mm256_add_pd(s32, _mm256_add_pd(_mm256_loadu_pd(g + 1),
                                                                  _mm256_loadu_pd(g))));
            if (mk) L = _mm256_and_pd(L, _mm256_loadu_pd((const double *)(mk + k)));
            __m256d v = scaled ? _mm256_mul_pd(L, S) : L;
            if (f.root) v = _mm256_sqrt_pd(_mm256_and_pd(_mm256_cmp_pd(L, zero, _CMP_GT_OQ), v));
            if (f.num) {   /* pct(a, a + v), as pct() */
                __m256d a = _mm256_loadu_pd(f.num + k), t = _mm256_add_pd(a, v);
                v = _mm256_and_pd(_mm256_cmp_pd(t, zero, _CMP_NEQ_UQ),
                                  _mm256_mul_pd(_mm256_set1_pd(100.0), _mm256_div_pd(a, t)));
            }
            _mm256_storeu_pd(sums + k, v);
        }
        _mm256_storeu_pd(lane, L);
    }
    for (; k < m; k++) lane_step(lane, j + k, e + k, mk ? mk[k] : -1, f, k, sums);
}

static inline __m128d sum_out2(__m128d L, sum_out f, __m128d S, size_t k) {
    __m128d v = f.scale != 1.0 ? _mm_mul_pd(L, S) : L;
    if (f.root) v = _mm_sqrt_pd(_mm_and_pd(_mm_cmpgt_pd(L, _mm_setzero_pd()), v));
    if (f.num) {
        __m128d a = _mm_loadu_pd(f.num + k), t = _mm_add_pd(a, v);
        v = _mm_and_pd(_mm_cmpneq_pd(t, _mm_setzero_pd()),
                       _mm_mul_pd(_mm_set1_pd(100.0), _mm_div_pd(a, t)));
    }
    return v;
}

static void lanes_run(double *lane, size_t j, const double *e, const long long *mk, size_t m,
                      sum_out f, double *sums) {
    if (vx_ta_avx2()) {
        lanes_run_avx2(lane, j, e, mk, m, f, sums);
        return;
    }
    size_t k = 0;
    for (; k < m && ((j + k) & 3); k++) lane_step(lane, j + k, e + k, mk ? mk[k] : -1, f, k, sums);
    if (k + 4 <= m) {
        __m128d L01 = _mm_loadu_pd(lane), L23 = _mm_loadu_pd(lane + 2), S = _mm_set1_pd(f.scale);
        for (; k + 4 <= m; k += 4) {
            const double *g = e + k;
            __m128d a2 = _mm_loadu_pd(g + 2), a3 = _mm_loadu_pd(g + 3);
            __m128d s23 = _mm_add_pd(a3, a2);
            L01 = _mm_add_pd(L01, _mm_add_pd(s23, _mm_add_pd(_mm_loadu_pd(g + 1), _mm_loadu_pd(g))));
            L23 = _mm_add_pd(L23, _mm_add_pd(_mm_add_pd(_mm_loadu_pd(g + 5), _mm_loadu_pd(g + 4)), s23));
            if (mk) {
                L01 = _mm_and_pd(L01, _mm_loadu_pd((const double *)(mk + k)));
                L23 = _mm_and_pd(L23, _mm_loadu_pd((const double *)(mk + k + 2)));
            }
            _mm_storeu_pd(sums + k, sum_out2(L01, f, S, k));
            _mm_storeu_pd(sums + k + 2, sum_out2(L23, f, S, k + 2));
        }
        _mm_storeu_pd(lane, L01);
        _mm_storeu_pd(lane + 2, L23);
    }
    for (; k < m; k++) lane_step(lane, j + k, e + k, mk ? mk[k] : -1, f, k, sums);
}

/* Whether x[1-P .. m-1] holds a run of P zeros or more, that is, whether
 * some window ending in the segment is all zero and needs the count and the
 * masks. Money flows, squared returns of flat closes and %K put zeros in
 * most segments, but rarely a whole window of them (MFI: 3% of segments),
 * and this test costs less than the masks: a bitmap of the zeros (compare,
 * movemask), then a few operations per word. Windows longer than the bitmap
 * get "yes": the general path is always right. */
enum { ZMAP_WORDS = (SEGMENT + 128 + 63) / 64 };

/* w[k] bit i set where y[64k + i] == 0, for the R values of y. */
static TA_AVX2 void zero_map_avx2(const double *y, size_t R, uint64_t *w) {
    const __m256d zero = _mm256_setzero_pd();
    for (size_t at = 0; at < R; at += 64) {   /* each word in a register */
        size_t n = R - at < 64 ? R - at : 64, i = 0;
        uint64_t v = 0;
        for (; i + 4 <= n; i += 4)
            v |= (uint64_t)_mm256_movemask_pd(_mm256_cmp_pd(_mm256_loadu_pd(y + at + i), zero,
                                                            _CMP_EQ_OQ)) << i;
        for (; i < n; i++) v |= (uint64_t)(y[at + i] == 0.0) << i;
        w[at / 64] = v;
    }
}

static void zero_map(const double *y, size_t R, uint64_t *w) {
    if (vx_ta_avx2()) {
        zero_map_avx2(y, R, w);
        return;
    }
    const __m128d zero = _mm_setzero_pd();
    for (size_t at = 0; at < R; at += 64) {
        size_t n = R - at < 64 ? R - at : 64, i = 0;
        uint64_t v = 0;
        for (; i + 2 <= n; i += 2)
            v |= (uint64_t)_mm_movemask_pd(_mm_cmpeq_pd(_mm_loadu_pd(y + at + i), zero)) << i;
        for (; i < n; i++) v |= (uint64_t)(y[at + i] == 0.0) << i;
        w[at / 64] = v;
    }
}

static int has_zero_window(const double *x, size_t m, size_t P) {
    size_t R = m + P - 1, run = 0;   /* run: zeros running into the current word */
    if (P > 129 || R > ZMAP_WORDS * 64) return 1;
    uint64_t w[ZMAP_WORDS];
    zero_map(x + 1 - (ptrdiff_t)P, R, w);
    for (size_t at = 0; at < R; at += 64) {
        unsigned width = R - at < 64 ? (unsigned)(R - at) : 64;
        uint64_t full = width == 64 ? ~0ull : (1ull << width) - 1, v = w[at / 64];
        if (v == full) {
            if ((run += width) >= P) return 1;
            continue;
        }
        if ((run += (size_t)__builtin_ctzll(~v)) >= P) return 1;
        if (P <= 64) {   /* a run inside the word: v AND v shifted, doubling */
            uint64_t z = v;
            size_t have = 1;
            while (2 * have <= P) z &= z >> have, have *= 2;
            if (have < P) z &= z >> (P - have);
            if (z) return 1;
        }
        run = v >> (width - 1) & 1 ? (size_t)__builtin_clzll(~(v << (64 - width))) : 0;
    }
    return 0;
}

static long long count_nonzero(const double *x, size_t n) {
    long long c = 0;
    for (size_t k = 0; k < n; k++) c += x[k] != 0.0;
    return c;
}

/* Scratch placement. A load from an address whose low 12 bits match a store
 * still in flight waits for that store ("4K aliasing"). With scratch, inputs
 * and outputs at arbitrary offsets, this made the same kernel run anywhere
 * between 450M and 780M bars/s depending on where the caller's arrays
 * happened to lie. away_from() returns where in buf (PAGE_DOUBLES longer than
 * needed) scratch should start: the middle of the widest gap, modulo 4096,
 * between the n arrays it is used with. */
enum { PAGE_DOUBLES = 4096 / sizeof(double) };

static double *away_from(double *buf, const uintptr_t *arrays, int n) {
    unsigned at[8], best = 0, start = 0;
    for (int k = 0; k < n; k++) {   /* insertion sort of the page offsets */
        unsigned v = (unsigned)(arrays[k] & 4095);
        int j = k;
        for (; j > 0 && at[j - 1] > v; j--) at[j] = at[j - 1];
        at[j] = v;
    }
    for (int k = 0; k < n; k++) {
        unsigned gap = k + 1 < n ? at[k + 1] - at[k] : at[0] + 4096 - at[k];
        if (gap > best) best = gap, start = at[k];
    }
    unsigned want = (start + best / 2) & 4095 & ~15u, have = (unsigned)((uintptr_t)buf & 4095);
    return buf + ((want - have) & 4095) / sizeof(double);
}

/* The window's non-zero count after each of pushes 0..m-1 (x[k - P] leaves
 * from push `fill` on), starting from nz; mk[k] gets -1 where the count is
 * above 0, else 0. Returns the last count. Two (SSE2) or four (AVX2) pushes
 * at a time in integers: a compare gives -1 per non-zero, so -1 for a
 * leaving non-zero minus -1 for an entering one is the change; a prefix add
 * within the group and one carried add keep the dependency chain short. In
 * SSE2 the count stays far below 2^31, so a zero test on the low 32 bits of
 * each lane is a zero test of the count. */
static TA_AVX2 long long nonzero_masks_avx2(const double *x, size_t P, size_t fill, size_t m,
                                            long long nz, long long *mk) {
    size_t k = 0;
    for (; k < fill; k++) {
        nz += x[k] != 0.0;
        mk[k] = -(nz != 0);
    }
    const __m256d zero = _mm256_setzero_pd();
    const __m256i none = _mm256_setzero_si256(), ones = _mm256_set1_epi64x(-1);
    __m256i cnt = _mm256_set1_epi64x(nz);
    for (; k + 4 <= m; k += 4) {
        __m256d a = _mm256_loadu_pd(x + k), b = _mm256_loadu_pd(x + k - P);
        __m256i in = _mm256_castpd_si256(_mm256_cmp_pd(a, zero, _CMP_NEQ_UQ));
        __m256i out = _mm256_castpd_si256(_mm256_cmp_pd(b, zero, _CMP_NEQ_UQ));
        __m256i d = _mm256_sub_epi64(out, in), up1, up2;
        up1 = _mm256_permute4x64_epi64(d, _MM_SHUFFLE(2, 1, 0, 0));   /* lanes up by one */
        d = _mm256_add_epi64(d, _mm256_blend_epi32(up1, none, 0x03));
        up2 = _mm256_permute4x64_epi64(d, _MM_SHUFFLE(1, 0, 0, 0));   /* and by two */
        d = _mm256_add_epi64(d, _mm256_blend_epi32(up2, none, 0x0f));
        __m256i c = _mm256_add_epi64(cnt, d);   /* the chain: one add, the broadcast is off it */
        cnt = _mm256_add_epi64(cnt, _mm256_permute4x64_epi64(d, _MM_SHUFFLE(3, 3, 3, 3)));
        __m256i nonzero = _mm256_xor_si256(_mm256_cmpeq_epi64(c, none), ones);
        _mm256_storeu_si256((__m256i *)(mk + k), nonzero);
    }
    nz = _mm256_extract_epi64(cnt, 0);
    for (; k < m; k++) {
        nz += (x[k] != 0.0) - (x[k - P] != 0.0);
        mk[k] = -(nz != 0);
    }
    return nz;
}

static long long nonzero_masks(const double *x, size_t P, size_t fill, size_t m, long long nz,
                               long long *mk) {
    if (vx_ta_avx2()) return nonzero_masks_avx2(x, P, fill, m, nz, mk);
    size_t k = 0;
    for (; k < fill; k++) {
        nz += x[k] != 0.0;
        mk[k] = -(nz != 0);
    }
    const __m128d zero = _mm_setzero_pd();
    const __m128i ones = _mm_set1_epi32(-1);
    __m128i cnt = _mm_set1_epi64x(nz);
    for (; k + 2 <= m; k += 2) {
        __m128i in = _mm_castpd_si128(_mm_cmpneq_pd(_mm_loadu_pd(x + k), zero));
        __m128i out = _mm_castpd_si128(_mm_cmpneq_pd(_mm_loadu_pd(x + k - P), zero));
        __m128i d = _mm_sub_epi64(out, in);
        d = _mm_add_epi64(d, _mm_slli_si128(d, 8));
        __m128i c = _mm_add_epi64(cnt, d);
        cnt = _mm_unpackhi_epi64(c, c);
        __m128i z = _mm_cmpeq_epi32(_mm_shuffle_epi32(c, _MM_SHUFFLE(2, 2, 0, 0)), _mm_setzero_si128());
        _mm_storeu_si128((__m128i *)(mk + k), _mm_xor_si128(z, ones));
    }
    nz = _mm_cvtsi128_si64(cnt);
    for (; k < m; k++) {
        nz += (x[k] != 0.0) - (x[k - P] != 0.0);
        mk[k] = -(nz != 0);
    }
    return nz;
}

/* Returns whether a pushed value was not finite (the caller's check_block
 * then names it): SMA checks its input here, in the pass that reads it. */
static TA_KERNEL int run_segment(run_sum *r, const double *x, size_t j0, size_t m, size_t P,
                                 sum_out f, double *sums) {
    /* x - P as a number: before the window fills it points before the array */
    const uintptr_t near[3] = {(uintptr_t)x, (uintptr_t)x - P * sizeof(double), (uintptr_t)sums};
    double scratch[SEGMENT + 3 + PAGE_DOUBLES], *dd = away_from(scratch, near, 3);
    long long mk[SEGMENT];
    size_t fill = j0 < P ? (P - j0 < m ? P - j0 : m) : 0;
    dd[0] = r->d[2], dd[1] = r->d[1], dd[2] = r->d[0];
    long long zeros = fill != 0, bad = 0;   /* 64-bit: the vectorised ORs need no narrowing */
    for (size_t k = 0; k < fill; k++) {   /* the ring is not full yet */
        dd[k + 3] = x[k];
        bad |= !(x[k] > -HUGE_VAL) | !(x[k] < HUGE_VAL);
    }
    for (size_t k = fill; k < m; k++) {   /* d, whether a zero enters or leaves, the check */
        dd[k + 3] = x[k] - x[k - P];
        zeros |= (x[k] == 0.0) | (x[k - P] == 0.0);
        bad |= !(x[k] > -HUGE_VAL) | !(x[k] < HUGE_VAL);
    }
    size_t k;
    if (zeros && !fill && !has_zero_window(x, m, P)) {
        zeros = 0;      /* no window sums to 0 here: no masks, and the count goes stale */
        r->nz = -1;
    } else if (zeros) {
        if (r->nz < 0) r->nz = count_nonzero(x - P, P);
        r->nz = nonzero_masks(x, P, fill, m, r->nz, mk);
    }
    for (k = 0; k < m;) {
        size_t at = r->resum_at;
        int resum = at >= j0 + k && at < j0 + m;
        size_t stop = resum ? at - j0 + 1 : m;
        lanes_run(r->lane, j0 + k, dd + k, zeros ? mk + k : NULL, stop - k, sum_out_from(f, k),
                  sums + k);
        k = stop;
        if (!resum) continue;
        if (!zeros || mk[k - 1]) r->lane[at & 3] = exact_sum(x + k - P, (int)P);
        if (--r->left) {
            r->resum_at = at + 1;
        } else {
            r->left = 4;
            r->resum_at = next_resum(at - 3 + 1, P);
        }
    }
    r->d[0] = dd[m + 2], r->d[1] = dd[m + 1], r->d[2] = dd[m];
    return bad != 0;
}

/* f: what the outputs get (sum_out). Returns whether a value was not finite. */
static int run_sums(run_sum *r, const double *x, size_t j0, size_t m, int p, sum_out f,
                    double *sums) {
    size_t P = (size_t)p;
    int bad = 0;
    if (j0 == 0) {
        r->resum_at = next_resum(0, P);
        r->left = 4;
    }
    for (size_t k = 0; k < m; k += SEGMENT)
        bad |= run_segment(r, x + k, j0 + k, m - k < SEGMENT ? m - k : SEGMENT, P,
                           sum_out_from(f, k), sums + k);
    return bad;
}

/* OBV in one pass per block: the input checks, the signed volumes (selects,
 * no branch to mispredict on flat closes) and the four chains of the running
 * total, in SSE2 pairs, with the signed volumes of the last four bars kept in
 * registers. One pass matters here: OBV reads two arrays and writes one, and
 * with separate passes the compute and the memory traffic of a long series
 * took turns instead of overlapping. A block that fails the checks goes to
 * check_block, which names the bar. No software prefetch: with long series
 * on huge pages (vx_ta_alloc) the hardware's streams keep up, and asking
 * 2 KB ahead made a million bars 15-25% slower (it helped on 4 KB pages,
 * where the hardware prefetchers stop at each page's end). */
static inline double obv_sv(double xc, double xp, double v) {
    return (xc > xp ? v : 0.0) - (xc < xp ? v : 0.0);
}

/* One bar of k_obv outside the SSE2 pairs: the chain's add, and the check
 * folded into bad as a NaN. */
static inline void obv_bar(const double *x, const double *vol, size_t i, double *o, double *lane,
                           double *s1, double *s2, double *s3, __m128d *bad) {
    double sv = obv_sv(x[i], x[i - 1], vol[i]);
    int wrong = x[i] - x[i] != 0.0 || vol[i] - vol[i] != 0.0 || vol[i] < 0.0;
    *bad = _mm_or_pd(*bad, _mm_set_sd(wrong ? NAN : 0.0));
    o[i] = lane[i & 3] = lane[i & 3] + ((sv + *s1) + (*s2 + *s3));
    *s3 = *s2, *s2 = *s1, *s1 = sv;
}

static inline __m128d obv_sv2(const double *x, const double *vol, __m128d *bad) {
    __m128d xc = _mm_loadu_pd(x), xp = _mm_loadu_pd(x - 1), v = _mm_loadu_pd(vol);
    __m128d fx = _mm_sub_pd(xc, xc), fv = _mm_sub_pd(v, v);   /* 0, or NaN if not finite */
    *bad = _mm_or_pd(*bad, _mm_or_pd(_mm_cmpunord_pd(fx, fv), _mm_cmplt_pd(v, _mm_setzero_pd())));
    return _mm_sub_pd(_mm_and_pd(_mm_cmpgt_pd(xc, xp), v), _mm_and_pd(_mm_cmplt_pd(xc, xp), v));
}

/* OBV's chains four bars at a time in one AVX2 quad: for bars i..i+3 (i a
 * multiple of 4) with P = sv[i..i+3], A = P + (P shifted by one) holds
 * sv[k] + sv[k-1], and each lane adds A[k] + A[k-2] -- the step's
 * (sv + s1) + (s2 + s3), the same adds in the same order. lane[0..3], s1..s3
 * (sv of the three bars before i) are read and left as the SSE2 pairs
 * leave them. Returns the bar it stopped at; bad gets any non-finite input
 * or negative volume. */
static TA_AVX2 size_t obv_quads_avx2(const double *x, const double *vol, size_t i, size_t b1,
                                     double *o, double *lane, double *s1, double *s2, double *s3,
                                     __m128d *bad) {
    __m256d L = _mm256_loadu_pd(lane), zero = _mm256_setzero_pd();
    __m256d Pprev = _mm256_set_pd(*s1, *s2, *s3, 0.0);            /* sv[i-4..i-1]: [_, s3, s2, s1] */
    __m256d Aprev = _mm256_set_pd(*s1 + *s2, *s2 + *s3, 0.0, 0.0);  /* hi: A[i-2], A[i-1] */
    __m256d B = _mm256_setzero_pd();
    for (; i + 4 <= b1; i += 4) {
        __m256d xc = _mm256_loadu_pd(x + i), xp = _mm256_loadu_pd(x + i - 1), v = _mm256_loadu_pd(vol + i);
        __m256d fx = _mm256_sub_pd(xc, xc), fv = _mm256_sub_pd(v, v);   /* 0, or NaN if not finite */
        B = _mm256_or_pd(B, _mm256_or_pd(_mm256_cmp_pd(fx, fv, _CMP_UNORD_Q), _mm256_cmp_pd(v, zero, _CMP_LT_OQ)));
        __m256d P = _mm256_sub_pd(_mm256_and_pd(_mm256_cmp_pd(xc, xp, _CMP_GT_OQ), v),
                                  _mm256_and_pd(_mm256_cmp_pd(xc, xp, _CMP_LT_OQ), v));
        __m256d T = _mm256_permute2f128_pd(Pprev, P, 0x21);   /* sv[i-2], sv[i-1], sv[i], sv[i+1] */
        __m256d Q = _mm256_shuffle_pd(T, P, 0x5);             /* sv[i-1], sv[i], sv[i+1], sv[i+2] */
        __m256d A = _mm256_add_pd(P, Q);
        __m256d A2 = _mm256_permute2f128_pd(Aprev, A, 0x21); /* A[k-2] */
        L = _mm256_add_pd(L, _mm256_add_pd(A, A2));
        _mm256_storeu_pd(o + i, L);
        Pprev = P, Aprev = A;
    }
    _mm256_storeu_pd(lane, L);
    double t[4];
    _mm256_storeu_pd(t, Pprev);
    *s1 = t[3], *s2 = t[2], *s3 = t[1];
    *bad = _mm_or_pd(*bad, _mm_or_pd(_mm256_castpd256_pd128(B), _mm256_extractf128_pd(B, 1)));
    return i;
}

static TA_KERNEL int k_obv(KERNEL_ARGS) {
    (void)p;
    WARM(K_OBV, 1);
    const double *x = in[C], *vol = in[V];
    obv_s *s = &u->obv;
    double *o = out[0], *lane = s->lane, s1 = s->s1, s2 = s->s2, s3 = s->s3;
    /* the AVX2 quads take the whole series in one call (a bad input is
     * still found, and named by the exact check, before anything returns) */
    int avx2 = vx_ta_avx2();
    size_t block = avx2 ? n : BLOCK;
    for (size_t b0 = w, b1; b0 < n; b0 = b1) {
        b1 = n - b0 < block ? n : b0 + block;
        __m128d bad = _mm_setzero_pd();
        size_t i = b0;
        for (; i < b1 && (i & 3); i++)   /* scalar to a bar that is 0 mod 4 */
            obv_bar(x, vol, i, o, lane, &s1, &s2, &s3, &bad);
        if (i + 4 <= b1 && avx2) {
            i = obv_quads_avx2(x, vol, i, b1, o, lane, &s1, &s2, &s3, &bad);
        } else if (i + 4 <= b1) {
            __m128d L01 = _mm_loadu_pd(lane), L23 = _mm_loadu_pd(lane + 2);
            /* (sv[i-2], sv[i-1]) and (sv[i-4], sv[i-3]); only the upper half of the latter is read */
            __m128d Pm2 = _mm_set_pd(s1, s2), Pm4 = _mm_set_pd(s3, 0.0);
            for (; i + 4 <= b1; i += 4) {
                __m128d P0 = obv_sv2(x + i, vol + i, &bad), P2 = obv_sv2(x + i + 2, vol + i + 2, &bad);
                __m128d S1 = _mm_shuffle_pd(Pm2, P0, 1), S3 = _mm_shuffle_pd(Pm4, Pm2, 1);
                __m128d S5 = _mm_shuffle_pd(P0, P2, 1);
                L01 = _mm_add_pd(L01, _mm_add_pd(_mm_add_pd(P0, S1), _mm_add_pd(Pm2, S3)));
                L23 = _mm_add_pd(L23, _mm_add_pd(_mm_add_pd(P2, S5), _mm_add_pd(P0, S1)));
                _mm_storeu_pd(o + i, L01);
                _mm_storeu_pd(o + i + 2, L23);
                Pm4 = P0, Pm2 = P2;
            }
            _mm_storeu_pd(lane, L01);
            _mm_storeu_pd(lane + 2, L23);
            s1 = _mm_cvtsd_f64(_mm_unpackhi_pd(Pm2, Pm2)), s2 = _mm_cvtsd_f64(Pm2);
            s3 = _mm_cvtsd_f64(_mm_unpackhi_pd(Pm4, Pm4));
        }
        for (; i < b1; i++) obv_bar(x, vol, i, o, lane, &s1, &s2, &s3, &bad);   /* the tail */
        if (_mm_movemask_pd(_mm_cmpunord_pd(bad, bad)) &&   /* all-ones masks are NaNs too */
            check_block(K_OBV, BIT(C) | BIT(V), in, b0, b1, err, errlen))
            return -1;
    }
    s->s1 = s1, s->s2 = s2, s->s3 = s3;
    return 0;
}

static TA_KERNEL int k_sma(KERNEL_ARGS) {
    (void)u;
    int per = (int)p[0];
    run_sum r = {0};
    double *o = out[0];
    for (size_t b0 = 0, b1; b0 < n; b0 = b1) {
        b1 = n - b0 < BLOCK ? n : b0 + BLOCK;
        if (run_sums(&r, in[C] + b0, b0, b1 - b0, per, (sum_out){1.0 / per, 0, NULL}, o + b0) &&
            check_block(K_SMA, BIT(C), in, b0, b1, err, errlen))
            return -1;
    }
    for (size_t i = 0; i + 1 < (size_t)per && i < n; i++) o[i] = NAN;
    return 0;
}

static TA_KERNEL int k_wma(KERNEL_ARGS) {
    int per = (int)p[0];
    if (per == 1) return run_batch(K_WMA, u, 0, n, in, out, err, errlen);
    WARM(K_WMA, (size_t)per - 1);
    const wma_s *s = &u->wma;
    const double nd = s->n, div = s->div, *x = in[C];
    double W = s->w, S = s->sum, *o = out[0];
    STEADY(K_WMA, BIT(C), w) {
        double wsum = W + nd * x[i], all = S + x[i];
        o[i] = wsum / div;
        W = wsum - all;
        S = all - x[i + 1 - (size_t)per];
    }
    return 0;
}

static TA_KERNEL int k_roc(KERNEL_ARGS) {
    size_t per = (size_t)p[0];
    WARM(K_ROC, per);
    const double *x = in[C];
    double *o = out[0];
    STEADY(K_ROC, BIT(C), w) {
        double old = x[i - per];
        o[i] = old != 0.0 ? ((x[i] / old) - 1.0) * 100.0 : 0.0;
    }
    return 0;
}

/* BBANDS and STDDEV: var_step's sliding Welford, the divisions and square
 * roots moved out of the dependency chain into passes that vectorise. */
static TA_KERNEL int var_like(int kind, KERNEL_ARGS) {
    size_t per = (size_t)p[0];
    WARM(kind, per);
    const var_t *v = kind == K_BBANDS ? &u->bb.v : &u->std.v;
    const double inv = v->inv, *x = in[C];
    const double nd = v->n;
    double mean = v->mean, m2 = v->m2;
    int pos = v->r.pos, since = v->since;
    double dq[BLOCK], mt[BLOCK], vt[BLOCK];
    for (size_t b0 = w, b1; b0 < n; b0 = b1) {
        b1 = n - b0 < BLOCK ? n : b0 + BLOCK;
        if (check_block(kind, BIT(C), in, b0, b1, err, errlen)) return -1;
        size_t m = b1 - b0;
        const double *xb = x + b0, *ob = x + b0 - per;
        for (size_t j = 0; j < m; j++) dq[j] = (xb[j] - ob[j]) * inv;
        for (size_t j = 0; j < m; j++) {
            double d = xb[j] - ob[j], nm = mean + dq[j];
            m2 = m2 + d * (xb[j] - nm + ob[j] - mean);
            mean = nm;
            mt[j] = mean;
            vt[j] = m2;
            since++;
            if (++pos == (int)per) {
                pos = 0;
                if (since >= RESUM_EVERY) {
                    since = 0;
                    const double *win = xb + j + 1 - per;
                    double t = exact_sum(win, (int)per) / nd, q = 0.0;
                    for (size_t k = 0; k < per; k++) q += (win[k] - t) * (win[k] - t);
                    mean = t;
                    m2 = q;
                }
            }
        }
        /* sd = sqrt(m2 > 0 ? m2 / n : 0), the select a max that vectorises */
        if (kind == K_STDDEV) {
            const double nb = u->std.nbdev;
            for (size_t j = 0; j < m; j++) {
                double q = vt[j] * inv;
                out[0][b0 + j] = sqrt(q > 0.0 ? q : 0.0) * nb;
            }
        } else {
            const double up = u->bb.up, dn = u->bb.dn;
            for (size_t j = 0; j < m; j++) {
                double q = vt[j] * inv, sd = sqrt(q > 0.0 ? q : 0.0);
                out[0][b0 + j] = mt[j] + up * sd;
                out[1][b0 + j] = mt[j];
                out[2][b0 + j] = mt[j] - dn * sd;
            }
        }
    }
    return 0;
}

static int k_bbands(KERNEL_ARGS) { return var_like(K_BBANDS, u, p, n, in, out, err, errlen); }
static int k_stddev(KERNEL_ARGS) { return var_like(K_STDDEV, u, p, n, in, out, err, errlen); }

/* VWAP: the step's session bounds test (floor only when t leaves them), the
 * running sums, then one divide per bar in a pass that vectorises. */
static TA_KERNEL int k_vwap(KERNEL_ARGS) {
    (void)p;
    WARM(K_VWAP, 1);
    vwap_s *s = &u->vwap;
    const double anchor = s->anchor, *h = in[H], *l = in[L], *c = in[C], *vol = in[V], *t = in[T];
    double cur = s->session, lo = s->lo, hi = s->hi, PV = s->pv, VOL = s->vol, *o = out[0];
    double hlc[BLOCK], pv[BLOCK], vv[BLOCK];
    for (size_t b0 = w, b1; b0 < n; b0 = b1) {
        b1 = n - b0 < BLOCK ? n : b0 + BLOCK;
        if (check_block(K_VWAP, HLC | BIT(V) | BIT(T), in, b0, b1, err, errlen)) return -1;
        size_t m = b1 - b0;
        for (size_t j = 0; j < m; j++) hlc[j] = h[b0 + j] + l[b0 + j] + c[b0 + j];
        for (size_t j = 0; j < m; j++) {
            double a = hlc[j] * vol[b0 + j], b = vol[b0 + j], tj = t[b0 + j];
            int same = tj >= lo && tj < hi;
            if (!same) {
                double sess = floor(tj / anchor);
                same = sess == cur;
                cur = sess;
                lo = sess * anchor;
                hi = lo + anchor;
            }
            if (same) {
                a += PV;
                b += VOL;
            }
            PV = pv[j] = a;
            VOL = vv[j] = b;
        }
        for (size_t j = 0; j < m; j++) {   /* the step's expression, as selects around one divide */
            int any = vv[j] > 0.0;
            o[b0 + j] = (any ? pv[j] : hlc[j]) / (any ? 3.0 * vv[j] : 3.0);
        }
    }
    return 0;
}

static void nan_prefix(double *const *out, int nout, size_t upto, size_t n) {
    for (int k = 0; k < nout; k++)
        for (size_t i = 0; i < upto && i < n; i++) out[k][i] = NAN;
}

/* A running sum over values made a block at a time, keeping the last p of
 * them as run_sums' history: fill hist_next(h) with the block's m values,
 * then hist_sums(). Pushes are numbered from 0. */
typedef struct {
    run_sum r;
    double *buf;      /* p + BLOCK: history, then the block being made */
    size_t have, p;   /* history values held (at most p) */
} hist_sum;

static int hist_open(hist_sum *h, size_t p) {
    memset(h, 0, sizeof *h);
    h->p = p;
    h->buf = malloc(sizeof(double) * (p + BLOCK));
    return h->buf ? 0 : -1;
}

static double *hist_next(hist_sum *h) { return h->buf + h->have; }

/* The block's m values join the history (its last p values are kept). */
static void hist_shift(hist_sum *h, size_t m) {
    size_t keep = h->have + m < h->p ? h->have + m : h->p;
    memmove(h->buf, h->buf + h->have + m - keep, keep * sizeof(double));
    h->have = keep;
}

static void hist_sums(hist_sum *h, size_t j0, size_t m, sum_out f, double *sums) {
    run_sums(&h->r, h->buf + h->have, j0, m, (int)h->p, f, sums);
    hist_shift(h, m);
}

/* MFI: positive and negative money flow per bar in a pass that vectorises
 * (and checks the inputs), then their running sums, the second one giving
 * the ratio as it goes. */
static TA_KERNEL int k_mfi(KERNEL_ARGS) {
    (void)u;
    size_t P = (size_t)p[0];
    const double *h = in[H], *l = in[L], *c = in[C], *v = in[V];
    hist_sum hp, hn;
    int rc = hist_open(&hp, P) | hist_open(&hn, P);
    if (rc) snprintf(err, errlen, "mfi: out of memory");
    for (size_t b0 = 1, b1; b0 < n && !rc; b0 = b1) {
        b1 = n - b0 < BLOCK ? n : b0 + BLOCK;
        if (b0 == 1 && (rc = check_block(K_MFI, HLC | BIT(V), in, 0, 1, err, errlen))) break;
        size_t m = b1 - b0;
        double *up = hist_next(&hp), *dn = hist_next(&hn), *o = out[0] + b0;
        long long bad = 0;   /* 64-bit: see all_in_range */
        for (size_t k = 0; k < m; k++) {
            size_t i = b0 + k;
            double tp = h[i] + l[i] + c[i], prev = h[i - 1] + l[i - 1] + c[i - 1];   /* see step_mfi */
            double mf = tp * v[i];
            /* The block's check, in this pass: a NaN or an infinity among h, l,
             * c and v makes mf NaN or infinite (0 x inf is NaN). An overflow
             * to inf sends a good block to check_block, which passes it. */
            bad |= !(mf - mf == 0.0) | (v[i] < 0.0);
            up[k] = tp > prev ? mf : 0.0;
            dn[k] = tp < prev ? mf : 0.0;
        }
        if (bad && (rc = check_block(K_MFI, HLC | BIT(V), in, b0, b1, err, errlen))) break;
        hist_sums(&hp, b0 - 1, m, (sum_out){1.0, 0, NULL}, o);
        hist_sums(&hn, b0 - 1, m, (sum_out){1.0, 0, o}, o);   /* pct(up, up + down) */
    }
    free(hp.buf);
    free(hn.buf);
    if (!rc) nan_prefix(out, 1, P, n);
    return rc;
}

/* CCI of bars k in [k0, m) of a block: t[k] is bar k's typical price,
 * t[k + 1 - P .. k] its window, s[k] the window's sum. One bar as
 * step_cci does it (see there for the order of the deviation's adds). */
static inline double cci_bar(const double *t, const double *s, size_t k, size_t P) {
    double avg = s[k] / (double)P, a[4] = {0.0, 0.0, 0.0, 0.0};
    const double *w = t + k + 1 - P;
    for (size_t j = 0; j < P; j++) a[j & 3] += fabs(w[j] - avg);
    return cci_of(t[k], avg, (a[0] + a[1]) + (a[2] + a[3]), (int)P);
}

/* Four bars at a time, one a lane: each lane makes cci_bar's operations in
 * cci_bar's order (|x| as the sign bit cleared, which is fabs). Returns the
 * bar it stopped at. */
static TA_AVX2 size_t cci_quads_avx2(const double *t, const double *s, size_t k, size_t m,
                                     size_t P, double *o) {
    const __m256d sign = _mm256_set1_pd(-0.0), zero = _mm256_setzero_pd();
    const __m256d vp = _mm256_set1_pd((double)P), c015 = _mm256_set1_pd(0.015);
    for (; k + 4 <= m; k += 4) {
        __m256d avg = _mm256_div_pd(_mm256_loadu_pd(s + k), vp), a[4] = {zero, zero, zero, zero};
        const double *w = t + k + 1 - P;
        for (size_t j = 0; j < P; j++)
            a[j & 3] = _mm256_add_pd(a[j & 3], _mm256_andnot_pd(sign, _mm256_sub_pd(_mm256_loadu_pd(w + j), avg)));
        __m256d dev = _mm256_add_pd(_mm256_add_pd(a[0], a[1]), _mm256_add_pd(a[2], a[3]));
        __m256d dist = _mm256_sub_pd(_mm256_loadu_pd(t + k), avg);
        __m256d q = _mm256_div_pd(dist, _mm256_mul_pd(c015, _mm256_div_pd(dev, vp)));
        __m256d ok = _mm256_and_pd(_mm256_cmp_pd(dist, zero, _CMP_NEQ_UQ), _mm256_cmp_pd(dev, zero, _CMP_NEQ_UQ));
        _mm256_storeu_pd(o + k, _mm256_and_pd(ok, q));
    }
    return k;
}

/* cci_quads_avx2 in SSE2 pairs. */
static size_t cci_pairs(const double *t, const double *s, size_t k, size_t m, size_t P, double *o) {
    const __m128d sign = _mm_set1_pd(-0.0), zero = _mm_setzero_pd();
    const __m128d vp = _mm_set1_pd((double)P), c015 = _mm_set1_pd(0.015);
    for (; k + 2 <= m; k += 2) {
        __m128d avg = _mm_div_pd(_mm_loadu_pd(s + k), vp), a[4] = {zero, zero, zero, zero};
        const double *w = t + k + 1 - P;
        for (size_t j = 0; j < P; j++)
            a[j & 3] = _mm_add_pd(a[j & 3], _mm_andnot_pd(sign, _mm_sub_pd(_mm_loadu_pd(w + j), avg)));
        __m128d dev = _mm_add_pd(_mm_add_pd(a[0], a[1]), _mm_add_pd(a[2], a[3]));
        __m128d dist = _mm_sub_pd(_mm_loadu_pd(t + k), avg);
        __m128d q = _mm_div_pd(dist, _mm_mul_pd(c015, _mm_div_pd(dev, vp)));
        __m128d ok = _mm_and_pd(_mm_cmpneq_pd(dist, zero), _mm_cmpneq_pd(dev, zero));
        _mm_storeu_pd(o + k, _mm_and_pd(ok, q));
    }
    return k;
}

/* CCI: the block's typical prices (and the check) in one pass, their
 * running sums, then the mean deviation of every window, four (AVX2) or
 * two (SSE2) bars at a time -- the deviation is O(period) a bar, and was
 * nine tenths of the time through the step. */
static TA_KERNEL int k_cci(KERNEL_ARGS) {
    (void)u;
    size_t P = (size_t)p[0];
    const double *h = in[H], *l = in[L], *c = in[C];
    hist_sum hs;
    double sums[BLOCK];
    int rc = hist_open(&hs, P), avx2 = vx_ta_avx2();
    if (rc) snprintf(err, errlen, "cci: out of memory");
    for (size_t b0 = 0, b1; b0 < n && !rc; b0 = b1) {
        b1 = n - b0 < BLOCK ? n : b0 + BLOCK;
        size_t m = b1 - b0;
        double *t = hist_next(&hs);
        long long bad = 0;   /* 64-bit: see all_in_range */
        for (size_t k = 0; k < m; k++) {
            size_t i = b0 + k;
            t[k] = (h[i] + l[i] + c[i]) / 3.0;   /* see step_cci */
            bad |= !(t[k] - t[k] == 0.0);   /* not finite, or an overflow (check_block tells) */
        }
        if (bad && (rc = check_block(K_CCI, HLC, in, b0, b1, err, errlen))) break;
        run_sums(&hs.r, t, b0, m, (int)P, (sum_out){1.0, 0, NULL}, sums);
        size_t k = b0 + 1 >= P ? 0 : P - 1 - b0;   /* the first bar with a whole window */
        if (k < m) {
            double *o = out[0] + b0;
            k = avx2 ? cci_quads_avx2(t, sums, k, m, P, o) : cci_pairs(t, sums, k, m, P, o);
            for (; k < m; k++) o[k] = cci_bar(t, sums, k, P);
        }
        hist_shift(&hs, m);
    }
    free(hs.buf);
    if (!rc) nan_prefix(out, 1, P - 1, n);
    return rc;
}

/* q[k] = log(x[k] / x[k-1])^2, the log by the libmvec variant log1_mvec
 * uses, in one pass (x[-1] is read). */
static TA_AVX2 size_t log_returns_sq_avx2(const double *x, double *q, size_t m) {
    size_t k = 0;
    for (; k + 4 <= m; k += 4) {
        __m256d r = _ZGVdN4v_log(_mm256_div_pd(_mm256_loadu_pd(x + k), _mm256_loadu_pd(x + k - 1)));
        _mm256_storeu_pd(q + k, _mm256_mul_pd(r, r));
    }
    return k;
}

static void log_returns_sq(const double *x, double *q, size_t m) {
    size_t k = 0;
    if (vx_ta_avx2()) {
        k = log_returns_sq_avx2(x, q, m);
    } else {
        for (; k + 2 <= m; k += 2) {
            __m128d r = _ZGVbN2v_log(_mm_div_pd(_mm_loadu_pd(x + k), _mm_loadu_pd(x + k - 1)));
            _mm_storeu_pd(q + k, _mm_mul_pd(r, r));
        }
    }
    for (; k < m; k++) {
        double r = log1_mvec(x[k] / x[k - 1]);
        q[k] = r * r;
    }
}

/* Realized volatility: squared log returns (libmvec's log, two or four bars
 * a call), then their running sum, which scales and takes the root as it
 * goes. */
static TA_KERNEL int k_rvol(KERNEL_ARGS) {
    (void)u;
    size_t P = (size_t)p[0];
    const double scale = p[1] / (double)P, *x = in[C];
    hist_sum hs;
    int rc = hist_open(&hs, P);
    if (rc) snprintf(err, errlen, "rvol: out of memory");
    for (size_t b0 = 1, b1; b0 < n && !rc; b0 = b1) {
        b1 = n - b0 < BLOCK ? n : b0 + BLOCK;
        rc = check_block(K_RVOL, BIT(C), in, b0 == 1 ? 0 : b0, b1, err, errlen);
        if (rc) break;
        size_t m = b1 - b0;
        double *o = out[0] + b0;
        log_returns_sq(x + b0, hist_next(&hs), m);
        hist_sums(&hs, b0 - 1, m, (sum_out){scale, 1, NULL}, o);
    }
    free(hs.buf);
    if (!rc) nan_prefix(out, 1, P, n);
    return rc;
}

/* Sliding maximum of xh and minimum of xl over windows of p ending at each
 * index (shorter at the very start), van Herk/Gil-Werman style: per block of
 * p values a running prefix extreme, combined with the previous block's
 * suffix extremes. No data-dependent branches; max/min are exact, and among
 * equal values the newest wins, as in the stream's deques (it shows with
 * signed zeros), so the result equals the stream bit for bit. Both series
 * go through the same loops, which halves the loop overhead that dominates
 * short windows.
 * Called chunk by chunk (chunks are whole blocks); hprev/lprev (p+1 doubles,
 * -inf/+inf before the series starts; the last stays so) carry the suffix
 * extremes across calls; hcur/lcur are p doubles of scratch. */
static TA_KERNEL int sliding_extremes(const double *xh, const double *xl, size_t n, int p,
                                       double *hh, double *ll, double *hprev, double *lprev,
                                       double *hcur, double *lcur) {
    size_t P = (size_t)p;
    long long bad = 0;   /* 64-bit: see all_in_range */
    for (size_t s = 0; s < n; s += P) {
        size_t m = n - s < P ? n - s : P;
        const double *ah = xh + s, *al = xl + s;
        double gh = -INFINITY, gl = INFINITY;
        for (size_t k = 0; k < m; k++) {   /* >= and <=: among equal values the newest wins */
            gh = ah[k] >= gh ? ah[k] : gh;
            gl = al[k] <= gl ? al[k] : gl;
            hcur[k] = gh;
            lcur[k] = gl;
            bad |= not_finite(ah[k]) | not_finite(al[k]);
        }
        for (size_t k = 0; k < m; k++) {
            double qh = hprev[k + 1], ql = lprev[k + 1];
            hh[s + k] = qh > hcur[k] ? qh : hcur[k];
            ll[s + k] = ql < lcur[k] ? ql : lcur[k];
        }
        gh = -INFINITY, gl = INFINITY;
        for (size_t k = m; k-- > 0;) {
            gh = ah[k] > gh ? ah[k] : gh;
            gl = al[k] < gl ? al[k] : gl;
            hprev[k] = gh;
            lprev[k] = gl;
        }
    }
    return bad != 0;
}

/* Sliding maximum of xh and minimum of xl over windows of P ending at
 * series indices g0 .. g0+m-1 (xh, xl point at index g0; shorter windows at
 * the series' start), for short windows: P-1 passes of compare-and-select
 * that vectorise, where vHGW's running extremes are a chain per block. An
 * older value replaces the running extreme only when strictly beyond it, so
 * among equal values the newest wins, as in the stream's deques (signed
 * zeros included). */
enum { DIRECT_MAX = 8 };   /* the longest window done this way (at 14, vHGW is 2x faster) */

/* One window's extremes the slow way: the bars before the series' start
 * are not there (g = the window's end as a series index). */
static inline long long direct_one(const double *xh, const double *xl, size_t i, size_t g, size_t P,
                                   double *hh, double *ll) {
    double h = xh[i], l = xl[i];
    for (size_t d = 1; d < P && d <= g; d++) {
        double a = xh[(ptrdiff_t)i - (ptrdiff_t)d], b = xl[(ptrdiff_t)i - (ptrdiff_t)d];
        h = a > h ? a : h;
        l = b < l ? b : l;
    }
    hh[i] = h;
    ll[i] = l;
    return not_finite(xh[i]) | not_finite(xl[i]);
}

/* With P a constant the inner loop unrolls and the outer one vectorises:
 * one pass, the window's bars compared newest first as in the stream, and
 * the check of each bar's high and low. */
#define DIRECT_P(PP)                                                               \
    case PP:                                                                       \
        for (size_t i = lo; i < m; i++) {                                          \
            double h = xh[i], l = xl[i];                                           \
            bad |= not_finite(h) | not_finite(l);                                  \
            for (size_t d = 1; d < (PP); d++) {                                    \
                double a = xh[(ptrdiff_t)i - (ptrdiff_t)d];                        \
                double b = xl[(ptrdiff_t)i - (ptrdiff_t)d];                        \
                h = a > h ? a : h;                                                 \
                l = b < l ? b : l;                                                 \
            }                                                                      \
            hh[i] = h;                                                             \
            ll[i] = l;                                                             \
        }                                                                          \
        break;

static TA_KERNEL int direct_extremes(const double *xh, const double *xl, size_t g0, size_t m,
                                     size_t P, double *hh, double *ll) {
    size_t lo = g0 >= P - 1 ? 0 : P - 1 - g0;   /* from here every window is whole */
    if (lo > m) lo = m;
    long long bad = 0;   /* 64-bit: see all_in_range */
    for (size_t i = 0; i < lo; i++) bad |= direct_one(xh, xl, i, g0 + i, P, hh, ll);
    switch (P) {
    DIRECT_P(1) DIRECT_P(2) DIRECT_P(3) DIRECT_P(4) DIRECT_P(5) DIRECT_P(6) DIRECT_P(7) DIRECT_P(8)
    default:
        for (size_t i = lo; i < m; i++) bad |= direct_one(xh, xl, i, g0 + i, P, hh, ll);
        break;
    }
    return bad != 0;
}

/* An SMA over a series that arrives a piece at a time (the Stochastic's two
 * smoothings, run a chunk behind the raw %K while it is still in cache):
 * y[done..upto) is pushed in the same BLOCK pieces from 0 as sma_run's, so
 * the sums are sma_run's to the bit. */
typedef struct {
    run_sum r;
    size_t done;
} sma_pass;

static void sma_advance(sma_pass *s, const double *y, size_t upto, int p, double *o) {
    while (s->done < upto) {
        size_t j0 = s->done, j1 = upto - j0 < BLOCK ? upto : j0 + BLOCK;
        run_sums(&s->r, y + j0, j0, j1 - j0, p, (sum_out){1.0 / p, 0, NULL}, o + j0);
        s->done = j1;
    }
}

/* An SMA (sum / p, with sma_step's exact sums) of y[0..m) into o[0..m);
 * o[j] means something from j = p - 1 on. y and o must not overlap. */
static void sma_run(const double *y, size_t m, int p, double *o) {
    sma_pass s = {0};
    sma_advance(&s, y, m, p, o);
}

/* Windows' extremes for Donchian, Williams %R, Stochastic and Stochastic RSI:
 * hh/ll from sliding_extremes over cache-sized chunks of x (high/low, or one
 * series for both), which the caller uses a chunk at a time. */
typedef struct {
    double *hh, *ll, *hprev, *lprev, *hcur, *lcur;
    size_t chunk;
} extremes_t;

static int extremes_open(extremes_t *e, int w) {
    size_t W = (size_t)w;
    e->chunk = (4096 / W + 1) * W;
    e->hh = malloc(sizeof(double) * (2 * e->chunk + 4 * W + 2));
    if (!e->hh) return -1;
    e->ll = e->hh + e->chunk;
    e->hprev = e->ll + e->chunk;
    e->lprev = e->hprev + W + 1;
    e->hcur = e->lprev + W + 1;
    e->lcur = e->hcur + W;
    for (size_t k = 0; k <= W; k++) {
        e->hprev[k] = -INFINITY;
        e->lprev[k] = INFINITY;
    }
    return 0;
}

/* The extremes of the chunk at series index c0 (xh, xl point at it; m
 * values) into e->hh, e->ll: direct compares for windows of DIRECT_MAX or
 * less, vHGW (whose carry in e is then kept) for longer ones. Returns
 * whether a high or a low of the chunk is not finite (checked in the pass
 * that reads them: a separate check pass was where a long series' memory
 * stalls landed, a fifth of the Stochastic's time on a million bars). */
static int window_extremes(extremes_t *e, const double *xh, const double *xl, size_t c0, size_t m,
                           int w) {
    if (w <= DIRECT_MAX) return direct_extremes(xh, xl, c0, m, (size_t)w, e->hh, e->ll);
    return sliding_extremes(xh, xl, m, w, e->hh, e->ll, e->hprev, e->lprev, e->hcur, e->lcur);
}

/* Ask for bars [at, at + PF_SPAN) of the arrays in `in` (mask) and of the
 * nout outputs, for writing, where they exist (below n). Spread over the
 * output loop of one chunk, one span per PF_SPAN bars it makes, the next
 * chunk arrives while this one computes (asked for all at once, the
 * requests queued behind each other and the compute waited anyway). */
enum { PF_SPAN = 64 };

static inline void prefetch_span(const double *const *in, unsigned mask, double *const *out,
                                 int nout, size_t at, size_t n) {
    if (at >= n) return;
    size_t end = n - at < PF_SPAN ? n : at + PF_SPAN;
    for (size_t i = at; i < end; i += 8) {
        for (int j = 0; j < VX_TA_NSLOTS; j++)
            if ((mask >> j) & 1u) __builtin_prefetch(in[j] + i);
        for (int k = 0; k < nout; k++) __builtin_prefetch(out[k] + i, 1);
    }
}

/* Donchian, Williams %R and Stochastic over arrays. */
static TA_KERNEL int extremes_batch(int kind, const double *p, size_t n, const double *const *in,
                                    double *const *out, char *err, size_t errlen) {
    int w = (int)p[0];
    unsigned mask = kind == K_DONCHIAN ? BIT(H) | BIT(L) : HLC;
    extremes_t e;
    if (extremes_open(&e, w)) {
        snprintf(err, errlen, "%s: out of memory", VX_TA_KINDS[kind].name);
        return -1;
    }
    const double *c = in[C];
    /* Stochastic: raw %K in out[1] -> slow %K in out[0] -> %D in out[1],
     * each smoothing a chunk behind the one before (see sma_advance); %D
     * overwrites a raw %K only once the slow %K has read it for the last
     * time (sk pushes later) */
    size_t W = (size_t)w, sk = (size_t)p[1], sd = (size_t)p[2];
    size_t k0 = W - 1, d0 = k0 + sk - 1;
    sma_pass slow = {0}, dpass = {0};
    int nout = VX_TA_KINDS[kind].noutputs;
    for (size_t c0 = 0; c0 < n; c0 += e.chunk) {
        size_t m = n - c0 < e.chunk ? n - c0 : e.chunk;
        long long bad = window_extremes(&e, in[H] + c0, in[L] + c0, c0, m, w);
        const double *hh = e.hh, *ll = e.ll;
        for (size_t s0 = 0; s0 < m; s0 += PF_SPAN) {   /* the outputs, a span at a time */
            size_t s1 = m - s0 < PF_SPAN ? m : s0 + PF_SPAN;
            prefetch_span(in, mask, out, nout, c0 + m + s0, n);
            if (kind == K_DONCHIAN) {
                for (size_t j = s0; j < s1; j++) {
                    out[0][c0 + j] = hh[j];
                    out[1][c0 + j] = (hh[j] + ll[j]) / 2.0;
                    out[2][c0 + j] = ll[j];
                }
            } else if (kind == K_WILLR) {
                for (size_t j = s0; j < s1; j++) {
                    out[0][c0 + j] = willr_of(c[c0 + j], hh[j], ll[j]);
                    bad |= not_finite(c[c0 + j]);
                }
            } else {
                for (size_t j = s0; j < s1; j++) {
                    out[1][c0 + j] = stoch_k(c[c0 + j], hh[j], ll[j]);
                    bad |= not_finite(c[c0 + j]);
                }
            }
        }
        if (bad && check_block(kind, mask, in, c0, c0 + m, err, errlen)) {
            free(e.hh);
            return -1;
        }
        if (kind == K_STOCH) {
            size_t have = c0 + m;   /* raw %K is there below this series index */
            if (have > k0)
                sma_advance(&slow, out[1] + k0, (have - k0) / BLOCK * BLOCK, (int)sk, out[0] + k0);
            size_t free_below = k0 + slow.done > sk ? k0 + slow.done - sk : 0;   /* raw %K no longer read */
            if (free_below > d0)
                sma_advance(&dpass, out[0] + d0, (free_below - d0) / BLOCK * BLOCK, (int)sd, out[1] + d0);
        }
    }
    free(e.hh);
    if (kind == K_STOCH) {   /* the rest of both smoothings */
        sma_advance(&slow, out[1] + k0, n - k0, (int)sk, out[0] + k0);
        sma_advance(&dpass, out[0] + d0, n - d0, (int)sd, out[1] + d0);
        nan_prefix(out, 2, d0 + sd - 1, n);
    } else {
        nan_prefix(out, VX_TA_KINDS[kind].noutputs, W - 1, n);
    }
    return 0;
}

/* Stochastic RSI: RSI into out[1], its extremes and %K into out[0], then %D
 * (an SMA of %K) into out[1] once the RSI is no longer needed. */
static TA_KERNEL int k_stochrsi(KERNEL_ARGS) {
    /* checked here too, so that a bad bar is reported as stochrsi's, not rsi's */
    if (check_block(K_STOCHRSI, BIT(C), in, 0, n, err, errlen)) return -1;
    size_t rp = (size_t)p[0], fk = (size_t)p[1];
    double *rout[1] = {out[1]};
    if (k_rsi(u, p, n, in, rout, err, errlen)) return -1;
    extremes_t e;
    if (extremes_open(&e, (int)fk)) {
        snprintf(err, errlen, "stochrsi: out of memory");
        return -1;
    }
    const double *r = out[1] + rp;
    size_t m = n - rp;
    for (size_t c0 = 0; c0 < m; c0 += e.chunk) {
        size_t cm = m - c0 < e.chunk ? m - c0 : e.chunk;
        (void)window_extremes(&e, r + c0, r + c0, c0, cm, (int)fk);   /* the RSI: finite, checked above */
        for (size_t j = 0; j < cm; j++) out[0][rp + c0 + j] = stoch_k(r[c0 + j], e.hh[j], e.ll[j]);
    }
    free(e.hh);
    size_t k0 = rp + fk - 1;
    sma_run(out[0] + k0, n - k0, (int)p[2], out[1] + k0);
    nan_prefix(out, 2, k0 + (size_t)p[2] - 1, n);
    return 0;
}

typedef int (*kernel_fn)(KERNEL_ARGS);

static const kernel_fn KERNELS[K_COUNT] = {
    [K_EMA] = k_ema, [K_OBV] = k_obv, [K_RSI] = k_rsi, [K_ATR] = k_atr, [K_NATR] = k_natr,
    [K_DEMA] = k_dema, [K_TEMA] = k_tema, [K_MACD] = k_macd, [K_KELTNER] = k_keltner,
    [K_SMA] = k_sma, [K_WMA] = k_wma, [K_ROC] = k_roc, [K_BBANDS] = k_bbands,
    [K_STDDEV] = k_stddev, [K_VWAP] = k_vwap, [K_ADX] = k_adx, [K_STOCHRSI] = k_stochrsi,
    [K_MFI] = k_mfi, [K_RVOL] = k_rvol, [K_SUPERTREND] = k_supertrend, [K_CCI] = k_cci,
};

/* The shape checks of a batch call; 0, or -1 with err naming the call. */
static int check_call(const ta_impl *s, const double *params, size_t n, const double *const *in,
                      double *const *out, char *err, size_t errlen) {
    int kind = s->pub.kind;
    const vx_ta_info *info = &VX_TA_KINDS[kind];
    const char *what = NULL, *name = NULL;
    for (int j = 0; j < VX_TA_NSLOTS && !what; j++)
        if (((info->inputs >> j) & 1u) && !in[j]) what = "input", name = SLOT_NAMES[j];
    for (int k = 0; k < info->noutputs && !what; k++)
        if (!out[k]) what = "output", name = info->output_names[k];
    if (!what && n > (size_t)s->pub.lookback) return 0;
    char call[96];   /* formatted only for the error: it would cost more than a 4k-bar run's checks */
    vx_ta_format_call(kind, params, call, sizeof call);
    if (what && what[0] == 'i') snprintf(err, errlen, "%s: the %s input is missing", call, name);
    else if (what) snprintf(err, errlen, "%s: output %s has no buffer", call, name);
    else if (n == 0) snprintf(err, errlen, "%s: no input values", call);
    else
        snprintf(err, errlen, "%s needs at least %d values (its lookback is %d), got %zu",
                 call, s->pub.lookback + 1, s->pub.lookback, n);
    return -1;
}

int vx_ta_batch(int kind, const double *params, size_t n, const double *const *in,
                double *const *out, char *err, size_t errlen) {
    ta_impl *s = vx_ta_impl_new(kind, params, err, errlen);
    if (!s) return -1;
    int rc = check_call(s, params, n, in, out, err, errlen);
    if (!rc && (kind == K_DONCHIAN || kind == K_WILLR || kind == K_STOCH))
        rc = extremes_batch(kind, params, n, in, out, err, errlen);
    else if (!rc && KERNELS[kind]) rc = KERNELS[kind](&s->u, params, n, in, out, err, errlen);
    else if (!rc) rc = run_batch(kind, &s->u, 0, n, in, out, err, errlen);
    free(s);
    return rc;
}
