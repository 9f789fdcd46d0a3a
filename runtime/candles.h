/*
 * candles.h — a fixed-capacity series of candles for one symbol and interval.
 *
 * Columns are stored twice over (index i and i + capacity), so the last `len`
 * candles are always one contiguous run starting at `start`: Lua gets views
 * (pointer + length) into the columns without copying, and indicators run on
 * them in place. Appending or updating the forming candle is O(1).
 *
 * A series can feed coarser ones (1m -> 5m, 15m, 1h, 4h, 1d, 1w): every update
 * is forwarded, and each coarser series keeps the aggregate of the closed fine
 * candles of its current period plus the forming one, so its forming candle is
 * what the exchange would show at that moment. Open times are aligned to the
 * epoch (weeks to Monday 00:00 UTC), as Binance and Aster do.
 */
#ifndef VX_CANDLES_H
#define VX_CANDLES_H

#include <stdint.h>
#include <stddef.h>

#define VX_CANDLES_MAXCHILD 8

typedef struct vx_candles_agg {
    int64_t t;            /* open time of the coarse period; -1 when empty */
    double o, h, l, c, v, vcomp, qv, qvcomp, n;
} vx_candles_agg;

typedef struct vx_candles vx_candles;
struct vx_candles {
    /* columns (2 * cap doubles each); view: col + start, len values */
    double *t, *o, *h, *l, *c, *v, *qv, *n;
    int cap;
    int len;
    int start;
    int closed;               /* the newest candle is final */
    int64_t interval_ms;
    int64_t offset_ms;        /* boundary alignment (weeks start on Monday) */
    int64_t appended;         /* candles ever appended */
    int64_t gaps;             /* times a candle arrived after a hole */
    int64_t missing;          /* candles those holes skipped */
    int64_t gap_from, gap_to; /* open times around the last hole */
    char err[200];
    /* resampling: this series feeds coarser ones */
    vx_candles *child[VX_CANDLES_MAXCHILD];
    int nchild;
    /* as a coarser series: what the finer one has sent for the open period */
    vx_candles_agg acc;       /* closed fine candles of the period */
    vx_candles_agg pend;      /* the forming fine candle (t = -1: none) */
    int64_t src_interval_ms;
};

/* What Lua reads of a series (it sees vx_candles as an opaque type): each
 * column already offset to the oldest candle, len values long, valid until
 * the series is next updated. */
typedef struct vx_candles_view {
    const double *t, *o, *h, *l, *c, *v, *qv, *n;
    int len, cap, closed;
    int64_t interval_ms, gaps, missing, gap_from, gap_to;
    const char *err;
} vx_candles_view;

void vx_candles_view_of(const vx_candles *c, vx_candles_view *out);

/* A new series; NULL with err filled (interval <= 0, capacity out of range). */
vx_candles *vx_candles_new(int64_t interval_ms, int capacity, char *err, size_t errlen);
void vx_candles_free(vx_candles *c);

/* Apply one candle (an exchange kline: open time, OHLCV, quote volume, trade
 * count; NaN for unknown quote volume or count). closed = 1 marks it final.
 * Returns 0 appended, 1 updated the newest, 2 corrected an older one, or -1
 * with c->err set (misaligned time, inconsistent OHLC, negative volume, a
 * candle older than the buffer). Forwards to coarser series. */
int vx_candles_update(vx_candles *c, double t, double o, double h, double l, double cl,
                      double v, double qv, double n, int closed);

/* Fold one trade into the candle of its time (opens the next candle when the
 * trade crosses a boundary). Returns as vx_candles_update. */
int vx_candles_trade(vx_candles *c, double t, double price, double qty);

/* Mark the newest candle closed if its period has ended by now_ms. Returns 1
 * if it closed one. */
int vx_candles_close_due(vx_candles *c, double now_ms);

/* Make `coarse` follow `fine`. coarse's interval must be a whole multiple of
 * fine's, and both must share the alignment. Returns 0 or -1 (err in fine). */
int vx_candles_link(vx_candles *fine, vx_candles *coarse);

/* Copy src's candles (the window, its flags and counters, not its links to
 * coarser series) into dst, which must have the same interval and room for
 * them. A decision cycle works on such a copy, so frames that arrive while
 * it runs cannot change what it reads. 0, or -1 (err in dst). */
int vx_candles_copy(vx_candles *dst, const vx_candles *src);

/* Open time of the period containing t for this series. */
double vx_candles_align(const vx_candles *c, double t);

/* Index (0-based, oldest first) of the candle that opens at t, or -1. */
int vx_candles_find(const vx_candles *c, double t);

#endif
