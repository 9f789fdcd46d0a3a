/*
 * decimal.h — exact decimals for prices and quantities: a signed 64-bit
 * mantissa and a scale (value = m / 10^scale, scale 0..18).
 *
 * Venues publish tick and step sizes as decimal strings ("0.00010000") and
 * check `(price - minPrice) % tickSize == 0` exactly; doing that in binary
 * floating point misses by one ulp and gets orders rejected. Everything here
 * is integer arithmetic (products in 128 bits), so rounding and filter checks
 * give the venue's answer.
 */
#ifndef VX_DECIMAL_H
#define VX_DECIMAL_H

#include <stddef.h>
#include <stdint.h>

#define VX_DEC_MAX_SCALE 18

typedef struct vx_dec {
    int64_t m;
    int scale;
} vx_dec;

enum { VX_ROUND_DOWN = 0, VX_ROUND_UP = 1, VX_ROUND_NEAREST = 2, VX_ROUND_EXACT = 3 };

/* Parse "123", "-0.00100", "1e-8", "1.5E3". 0, or -1 (not a number, or more
 * than 18 fractional digits / out of range after trimming trailing zeros). */
int vx_dec_parse(const char *s, vx_dec *out);
/* The shortest decimal that reads back as x (so 0.3 is "0.3", not
 * 0.29999999999999998890). 0, or -1 for NaN, infinities or out of range. */
int vx_dec_from_double(double x, vx_dec *out);
/* Plain notation, no exponent, trailing zeros trimmed ("0.0001", "25"). */
void vx_dec_format(const vx_dec *d, char *out, size_t outlen);
int vx_dec_cmp(const vx_dec *a, const vx_dec *b);

/* Round x onto the grid base + k*step (step > 0) in the given direction
 * (DOWN/UP are toward -inf/+inf; NEAREST breaks ties away from zero;
 * EXACT fails unless x is already on the grid). 0, -1 (overflow or bad
 * step), or 1 (EXACT and not on the grid). */
int vx_dec_round_step(const vx_dec *x, const vx_dec *base, const vx_dec *step, int mode, vx_dec *out);
/* a / b (b > 0) rounded onto the grid base + k*step, exactly: how a notional
 * becomes a quantity without passing through a binary double. Returns as
 * vx_dec_round_step (-1 also on overflow past 128-bit intermediates). */
int vx_dec_div_round_step(const vx_dec *a, const vx_dec *b, const vx_dec *base, const vx_dec *step, int mode,
                          vx_dec *out);
/* Sign of a*b - c, computed exactly (for notional >= minimum). -2 on overflow. */
int vx_dec_cmp_product(const vx_dec *a, const vx_dec *b, const vx_dec *c);
/* Sign of a*b - c*d, exactly (for price <= mark * multiplier). -2 on overflow. */
int vx_dec_cmp_products(const vx_dec *a, const vx_dec *b, const vx_dec *c, const vx_dec *d);

#endif
