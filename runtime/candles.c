/*
 * candles.c — candle ring buffers and resampling. See candles.h.
 *
 * Volumes of a resampled candle are sums of many doubles; they are added with
 * Neumaier compensation so the total is the correctly rounded sum the
 * exchange's decimal arithmetic would round to, not one that drifts with the
 * number of fine candles.
 */
#include "candles.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY_MS 86400000LL
#define WEEK_MS (7 * DAY_MS)
#define MAX_CAPACITY (1 << 26)

enum { COL_T, COL_O, COL_H, COL_L, COL_C, COL_V, COL_QV, COL_N, NCOLS };

static void columns(const vx_candles *c, double *cols[NCOLS]) {
    double *all[NCOLS] = {c->t, c->o, c->h, c->l, c->c, c->v, c->qv, c->n};
    memcpy(cols, all, sizeof all);
}

vx_candles *vx_candles_new(int64_t interval_ms, int capacity, char *err, size_t errlen) {
    if (interval_ms <= 0) {
        snprintf(err, errlen, "candles: interval must be positive, got %" PRId64 " ms", interval_ms);
        return NULL;
    }
    if (capacity < 1 || capacity > MAX_CAPACITY) {
        snprintf(err, errlen, "candles: capacity must be from 1 to %d, got %d", MAX_CAPACITY, capacity);
        return NULL;
    }
    vx_candles *c = calloc(1, sizeof *c);
    double *mem = c ? malloc(sizeof(double) * 2 * (size_t)capacity * NCOLS) : NULL;
    if (!mem) {
        free(c);
        snprintf(err, errlen, "candles: out of memory for %d candles", capacity);
        return NULL;
    }
    double **cols[NCOLS] = {&c->t, &c->o, &c->h, &c->l, &c->c, &c->v, &c->qv, &c->n};
    for (int k = 0; k < NCOLS; k++) *cols[k] = mem + (size_t)k * 2 * (size_t)capacity;
    c->cap = capacity;
    c->interval_ms = interval_ms;
    /* the epoch was a Thursday; weekly candles open on Mondays */
    c->offset_ms = interval_ms % WEEK_MS == 0 ? 4 * DAY_MS : 0;
    c->acc.t = -1;
    c->pend.t = -1;
    return c;
}

void vx_candles_free(vx_candles *c) {
    if (!c) return;
    free(c->t);
    free(c);
}

double vx_candles_align(const vx_candles *c, double t) {
    double k = floor((t - (double)c->offset_ms) / (double)c->interval_ms);
    return k * (double)c->interval_ms + (double)c->offset_ms;
}

static int set_err(vx_candles *c, const char *fmt, double a, double b) {
    snprintf(c->err, sizeof c->err, fmt, a, b);
    return -1;
}

static int check_candle(vx_candles *c, double t, double o, double h, double l, double cl, double v) {
    if (!isfinite(t) || !isfinite(o) || !isfinite(h) || !isfinite(l) || !isfinite(cl) || !isfinite(v))
        return set_err(c, "candle at %.0f has a missing or non-finite field (close %g)", t, cl);
    if (vx_candles_align(c, t) != t)
        return set_err(c, "candle open time %.0f is not on a %.0f ms boundary; pass the kline open time",
                       t, (double)c->interval_ms);
    if (h < l || h < o || h < cl || l > o || l > cl)
        return set_err(c, "candle at %.0f is inconsistent: high %g is below another price or low is above one",
                       t, h);
    if (v < 0) return set_err(c, "candle at %.0f has negative volume %g", t, v);
    return 0;
}

static void write_slot(vx_candles *c, int slot, const double *vals) {
    double *cols[NCOLS];
    columns(c, cols);
    for (int k = 0; k < NCOLS; k++) {
        cols[k][slot] = vals[k];
        cols[k][slot + c->cap] = vals[k];
    }
}

static void read_slot(const vx_candles *c, int slot, double *vals) {
    double *cols[NCOLS];
    columns(c, cols);
    for (int k = 0; k < NCOLS; k++) vals[k] = cols[k][slot];
}

static int slot_of(const vx_candles *c, int index) {
    int s = c->start + index;
    return s >= c->cap ? s - c->cap : s;
}

int vx_candles_find(const vx_candles *c, double t) {
    int lo = 0, hi = c->len - 1;
    const double *ts = c->t + c->start;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (ts[mid] == t) return mid;
        if (ts[mid] < t) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

static void forward(vx_candles *c, const double *vals, int closed);

static void note_gap(vx_candles *c, double last, double t) {
    int64_t skipped = (int64_t)((t - last) / (double)c->interval_ms) - 1;
    if (skipped <= 0) return;
    c->gaps++;
    c->missing += skipped;
    c->gap_from = (int64_t)last;
    c->gap_to = (int64_t)t;
}

/* Store one validated candle; returns 0 appended, 1 updated, 2 corrected. */
static int store(vx_candles *c, const double *vals, int closed) {
    double t = vals[COL_T];
    double last = c->len ? c->t[c->start + c->len - 1] : -INFINITY;
    int rc;
    if (c->len && t == last) {
        write_slot(c, slot_of(c, c->len - 1), vals);
        c->closed = closed;
        rc = 1;
    } else if (t > last) {
        if (c->len) note_gap(c, last, t);
        int slot;
        if (c->len < c->cap) {
            slot = slot_of(c, c->len);
            c->len++;
        } else {
            slot = c->start;
            c->start = c->start + 1 == c->cap ? 0 : c->start + 1;
        }
        write_slot(c, slot, vals);
        c->closed = closed;
        c->appended++;
        rc = 0;
    } else {
        int i = vx_candles_find(c, t);
        if (i < 0)
            return set_err(c, "candle at %.0f is older than the buffer (oldest %.0f) or falls in a gap",
                           t, c->len ? c->t[c->start] : NAN);
        write_slot(c, slot_of(c, i), vals);
        return 2;   /* history corrections are not forwarded */
    }
    forward(c, vals, closed);
    return rc;
}

int vx_candles_update(vx_candles *c, double t, double o, double h, double l, double cl,
                      double v, double qv, double n, int closed) {
    if (check_candle(c, t, o, h, l, cl, v)) return -1;
    double vals[NCOLS] = {t, o, h, l, cl, v, qv, n};
    return store(c, vals, closed ? 1 : 0);
}

int vx_candles_trade(vx_candles *c, double t, double price, double qty) {
    if (!isfinite(t) || !isfinite(price) || !isfinite(qty) || price <= 0 || qty < 0)
        return set_err(c, "trade at %.0f has a bad price or quantity (price %g)", t, price);
    double open = vx_candles_align(c, t);
    int i = c->len ? vx_candles_find(c, open) : -1;
    double vals[NCOLS];
    if (i < 0) {
        double q[NCOLS] = {open, price, price, price, price, qty, price * qty, 1};
        memcpy(vals, q, sizeof q);
    } else {
        read_slot(c, slot_of(c, i), vals);
        if (price > vals[COL_H]) vals[COL_H] = price;
        if (price < vals[COL_L]) vals[COL_L] = price;
        vals[COL_C] = price;
        vals[COL_V] += qty;
        vals[COL_QV] = (isnan(vals[COL_QV]) ? 0 : vals[COL_QV]) + price * qty;
        vals[COL_N] = (isnan(vals[COL_N]) ? 0 : vals[COL_N]) + 1;
    }
    return store(c, vals, 0);
}

int vx_candles_close_due(vx_candles *c, double now_ms) {
    if (!c->len || c->closed) return 0;
    int s = slot_of(c, c->len - 1);
    if (c->t[s] + (double)c->interval_ms > now_ms) return 0;
    double vals[NCOLS];
    read_slot(c, s, vals);
    c->closed = 1;
    forward(c, vals, 1);
    return 1;
}

int vx_candles_copy(vx_candles *dst, const vx_candles *src) {
    if (dst->interval_ms != src->interval_ms || dst->cap < src->len) {
        snprintf(dst->err, sizeof dst->err, "candles: cannot copy %d candles of %" PRId64 " ms into %d of %" PRId64 " ms",
                 src->len, src->interval_ms, dst->cap, dst->interval_ms);
        return -1;
    }
    double *from[NCOLS], *to[NCOLS];
    columns(src, from);
    columns(dst, to);
    size_t bytes = sizeof(double) * (size_t)src->len;
    for (int k = 0; k < NCOLS; k++) {
        /* both halves: the copy is a valid series that may be appended to */
        memcpy(to[k], from[k] + src->start, bytes);
        memcpy(to[k] + dst->cap, from[k] + src->start, bytes);
    }
    dst->len = src->len;
    dst->start = 0;
    dst->closed = src->closed;
    dst->appended = src->appended;
    dst->gaps = src->gaps;
    dst->missing = src->missing;
    dst->gap_from = src->gap_from;
    dst->gap_to = src->gap_to;
    return 0;
}

int vx_candles_link(vx_candles *fine, vx_candles *coarse) {
    if (coarse->interval_ms % fine->interval_ms != 0 || coarse->interval_ms == fine->interval_ms) {
        snprintf(fine->err, sizeof fine->err,
                 "cannot resample %" PRId64 " ms candles into %" PRId64 " ms: not a whole multiple",
                 fine->interval_ms, coarse->interval_ms);
        return -1;
    }
    if ((coarse->offset_ms - fine->offset_ms) % fine->interval_ms != 0) {
        snprintf(fine->err, sizeof fine->err, "cannot resample: the two series have different boundaries");
        return -1;
    }
    if (fine->nchild == VX_CANDLES_MAXCHILD) {
        snprintf(fine->err, sizeof fine->err, "at most %d coarser series per series", VX_CANDLES_MAXCHILD);
        return -1;
    }
    fine->child[fine->nchild++] = coarse;
    coarse->src_interval_ms = fine->interval_ms;
    return 0;
}

/* ---- aggregation ------------------------------------------------------------ */

static void kadd(double *sum, double *comp, double x) {
    if (isnan(x)) return;
    double t = *sum + x;
    if (fabs(*sum) >= fabs(x)) *comp += (*sum - t) + x;
    else *comp += (x - t) + *sum;
    *sum = t;
}

static void agg_start(vx_candles_agg *a, double t, const double *f) {
    a->t = (int64_t)t;
    a->o = f[COL_O];
    a->h = f[COL_H];
    a->l = f[COL_L];
    a->c = f[COL_C];
    a->v = a->vcomp = a->qv = a->qvcomp = 0;
    a->n = f[COL_N];
    kadd(&a->v, &a->vcomp, f[COL_V]);
    kadd(&a->qv, &a->qvcomp, f[COL_QV]);
    if (isnan(f[COL_QV])) a->qv = NAN;
}

static void agg_add(vx_candles_agg *a, const double *f) {
    if (f[COL_H] > a->h) a->h = f[COL_H];
    if (f[COL_L] < a->l) a->l = f[COL_L];
    a->c = f[COL_C];
    kadd(&a->v, &a->vcomp, f[COL_V]);
    kadd(&a->qv, &a->qvcomp, f[COL_QV]);
    a->n += f[COL_N];
}

static void agg_emit(vx_candles *c, const vx_candles_agg *a, int closed) {
    double qv = isnan(a->qv) ? NAN : a->qv + a->qvcomp;
    double vals[NCOLS] = {(double)a->t, a->o, a->h, a->l, a->c, a->v + a->vcomp, qv, a->n};
    store(c, vals, closed);
}

/* The coarse series c received fine candle f. */
static void resample(vx_candles *c, const double *f, int closed) {
    double open = vx_candles_align(c, f[COL_T]);
    /* a forming fine candle that the feed moved past is final */
    if (c->pend.t >= 0 && (double)c->pend.t != f[COL_T]) {
        double p[NCOLS] = {(double)c->pend.t, c->pend.o, c->pend.h, c->pend.l, c->pend.c,
                           c->pend.v, c->pend.qv, c->pend.n};
        if (c->acc.t < 0) agg_start(&c->acc, vx_candles_align(c, p[COL_T]), p);
        else agg_add(&c->acc, p);
        c->pend.t = -1;
    }
    if (c->acc.t >= 0 && (double)c->acc.t != open) {
        agg_emit(c, &c->acc, 1);   /* the period is over */
        c->acc.t = -1;
    }
    vx_candles_agg now;
    if (closed) {
        c->pend.t = -1;
        if (c->acc.t < 0) agg_start(&c->acc, open, f);
        else agg_add(&c->acc, f);
        now = c->acc;
    } else {
        c->pend = (vx_candles_agg){(int64_t)f[COL_T], f[COL_O], f[COL_H], f[COL_L], f[COL_C],
                                   f[COL_V], 0, f[COL_QV], 0, f[COL_N]};
        if (c->acc.t < 0) agg_start(&now, open, f);
        else {
            now = c->acc;
            agg_add(&now, f);
        }
    }
    int last_of_period = f[COL_T] + (double)c->src_interval_ms >= open + (double)c->interval_ms;
    int final = closed && last_of_period;
    agg_emit(c, &now, final);
    if (final) c->acc.t = -1;
}

static void forward(vx_candles *c, const double *vals, int closed) {
    for (int i = 0; i < c->nchild; i++) resample(c->child[i], vals, closed);
}

void vx_candles_view_of(const vx_candles *c, vx_candles_view *out) {
    int s = c->start;
    out->t = c->t + s;
    out->o = c->o + s;
    out->h = c->h + s;
    out->l = c->l + s;
    out->c = c->c + s;
    out->v = c->v + s;
    out->qv = c->qv + s;
    out->n = c->n + s;
    out->len = c->len;
    out->cap = c->cap;
    out->closed = c->closed;
    out->interval_ms = c->interval_ms;
    out->gaps = c->gaps;
    out->missing = c->missing;
    out->gap_from = c->gap_from;
    out->gap_to = c->gap_to;
    out->err = c->err;
}
