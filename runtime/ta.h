/*
 * ta.h — technical indicators: batch (array in, array out) and streaming
 * (O(1) per value, with a forming-candle "peek" that commits nothing).
 *
 * Every indicator is one step function over a small state. The batch entry
 * point runs that step through the warm-up and then a kernel that does the
 * step's arithmetic in the step's order, so a stream and a batch run over the
 * same values give bit-for-bit the same numbers at every index. Where a
 * kernel needs another order of operations to run fast (the EMAs and Wilder
 * averages but MACD's, OBV and the window sums as four interleaved chains),
 * the step uses that order too.
 *
 * Definitions follow TA-Lib's defaults (lookbacks, SMA-seeded EMA, Wilder
 * smoothing, first valid index); the per-indicator notes are in README.md
 * ("Indicators"). Lua reaches all of this through LuaJIT FFI (vibex.ta), so the
 * functions take plain doubles and C arrays and report errors in a caller
 * buffer, never by longjmp.
 *
 * Inputs travel in five fixed slots. Single-series indicators (SMA of closes,
 * RSI, ...) read the CLOSE slot; bar indicators read the slots they need.
 */
#ifndef VX_TA_H
#define VX_TA_H

#include <stddef.h>
#include <stdint.h>

enum { VX_TA_HIGH, VX_TA_LOW, VX_TA_CLOSE, VX_TA_VOLUME, VX_TA_TIME, VX_TA_NSLOTS };

#define VX_TA_MAXPARAM 4
#define VX_TA_MAXOUT 4

typedef struct vx_ta_info {
    const char *name;                       /* "sma", "macd", ... */
    const char *title;                      /* "Simple moving average" */
    unsigned inputs;                        /* bit i set: slot i is read */
    int nparams;
    int noutputs;
    const char *param_names[VX_TA_MAXPARAM];
    double param_defaults[VX_TA_MAXPARAM];
    unsigned period_params;                 /* bit i: param i is a period (integer >= 1) */
    const char *output_names[VX_TA_MAXOUT];
} vx_ta_info;

/* The public head of a stream; Lua reads these fields directly. */
typedef struct vx_ta_stream {
    double out[VX_TA_MAXOUT];   /* outputs of the last update (NaN while warming up) */
    int64_t count;              /* committed values so far */
    int kind;
    int noutputs;
    int lookback;               /* index of the first complete output */
    int failed;                 /* 1 after an update was refused; err says why */
    char err[160];
} vx_ta_stream;

/* The indicator table: *count entries, indexed by kind. */
const vx_ta_info *vx_ta_kinds(int *count);

/* Which hand-written SIMD paths the batch kernels take: "avx2" on a CPU
 * with AVX2 unless the environment has VIBEX_TA_ISA=sse2, else "sse2".
 * Results are the same bits either way. */
const char *vx_ta_isa(void);

/* Memory for a long series (the Lua output pool uses it from 2 MB up): n
 * doubles in a mapping of their own that starts on a 2 MB boundary and is
 * marked for transparent huge pages (MADV_HUGEPAGE; where the kernel has
 * them off, the advice changes nothing). A million-bar series then takes a
 * handful of page faults and TLB entries instead of two thousand: a pass
 * over three such arrays ran ~10% faster. Zero-filled; NULL when out of
 * memory. Give it back with vx_ta_free. */
double *vx_ta_alloc(size_t n);
void vx_ta_free(double *p);

/* Lookback (the index of the first valid output) for these parameters, or -1
 * with err filled when a parameter is out of range. params holds
 * info->nparams values. */
int vx_ta_lookback(int kind, const double *params, char *err, size_t errlen);

/* Run an indicator over n bars. in[slot] must be non-NULL for every slot the
 * indicator reads; out[k] must hold n doubles for k < noutputs. Values before
 * the lookback are NaN. Returns 0, or -1 with err filled (bad parameters,
 * n <= lookback, a NaN/infinite/negative-volume input, which names the index). */
int vx_ta_batch(int kind, const double *params, size_t n,
                const double *const *in, double *const *out,
                char *err, size_t errlen);

/* A streaming instance; NULL with err filled on bad parameters. */
vx_ta_stream *vx_ta_stream_new(int kind, const double *params, char *err, size_t errlen);

/* Feed one bar. commit=1 appends it; commit=0 computes the outputs as if it
 * were appended (the forming candle) and changes no state. Returns out[0];
 * NaN while warming up, or NaN with failed=1 and err set when an input is
 * refused (the state is then unchanged). */
double vx_ta_update(vx_ta_stream *s, double high, double low, double close,
                    double volume, double time, int commit);

/* Forget everything, as if just created. */
void vx_ta_reset(vx_ta_stream *s);

void vx_ta_stream_free(vx_ta_stream *s);

#endif
