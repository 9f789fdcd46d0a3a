/*
 * decimal.c — exact scaled-integer decimals (see decimal.h).
 */
#include "decimal.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef __int128 i128;

static const int64_t POW10[19] = {1LL,
                                  10LL,
                                  100LL,
                                  1000LL,
                                  10000LL,
                                  100000LL,
                                  1000000LL,
                                  10000000LL,
                                  100000000LL,
                                  1000000000LL,
                                  10000000000LL,
                                  100000000000LL,
                                  1000000000000LL,
                                  10000000000000LL,
                                  100000000000000LL,
                                  1000000000000000LL,
                                  10000000000000000LL,
                                  100000000000000000LL,
                                  1000000000000000000LL};

static vx_dec trim(vx_dec d) {
    while (d.scale > 0 && d.m % 10 == 0) {
        d.m /= 10;
        d.scale--;
    }
    if (d.m == 0) d.scale = 0;
    return d;
}

/* Store v (at scale) into out if it fits int64 after trimming; 0 or -1. */
static int store(i128 v, int scale, vx_dec *out) {
    while (scale > 0 && v % 10 == 0) {
        v /= 10;
        scale--;
    }
    if (v > INT64_MAX || v < -INT64_MAX) return -1;
    out->m = (int64_t)v;
    out->scale = v == 0 ? 0 : scale;
    return 0;
}

int vx_dec_parse(const char *s, vx_dec *out) {
    if (!s) return -1;
    while (isspace((unsigned char)*s)) s++;
    int neg = 0;
    if (*s == '+' || *s == '-') neg = *s++ == '-';
    i128 m = 0;
    int scale = 0, digits = 0, frac = 0;
    for (;; s++) {
        if (*s == '.' && !frac) {
            frac = 1;
            continue;
        }
        if (!isdigit((unsigned char)*s)) break;
        digits++;
        if (m > (i128)1 << 100) return -1;
        m = m * 10 + (*s - '0');
        if (frac) scale++;
    }
    if (!digits) return -1;
    if (*s == 'e' || *s == 'E') {
        s++;
        int eneg = 0, e = 0, edigits = 0;
        if (*s == '+' || *s == '-') eneg = *s++ == '-';
        for (; isdigit((unsigned char)*s); s++, edigits++)
            if ((e = e * 10 + (*s - '0')) > 400) return -1;
        if (!edigits) return -1;
        scale += eneg ? e : -e;
    }
    while (isspace((unsigned char)*s)) s++;
    if (*s) return -1;
    for (; scale < 0; scale++) {
        if (m > (i128)INT64_MAX) return -1;
        m *= 10;
    }
    while (scale > VX_DEC_MAX_SCALE && m % 10 == 0 && m != 0) {
        m /= 10;
        scale--;
    }
    if (m == 0) scale = 0;
    if (scale > VX_DEC_MAX_SCALE) return -1;
    return store(neg ? -m : m, scale, out);
}

int vx_dec_from_double(double x, vx_dec *out) {
    if (!isfinite(x)) return -1;
    char buf[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, x);
        if (strtod(buf, NULL) == x) return vx_dec_parse(buf, out);
    }
    return -1;
}

void vx_dec_format(const vx_dec *dp, char *out, size_t outlen) {
    vx_dec d = trim(*dp);
    uint64_t a = d.m < 0 ? (uint64_t)(-(d.m + 1)) + 1 : (uint64_t)d.m;
    uint64_t ip = a / (uint64_t)POW10[d.scale], fp = a % (uint64_t)POW10[d.scale];
    if (d.scale == 0)
        snprintf(out, outlen, "%s%llu", d.m < 0 ? "-" : "", (unsigned long long)ip);
    else
        snprintf(out, outlen, "%s%llu.%0*llu", d.m < 0 ? "-" : "", (unsigned long long)ip, d.scale,
                 (unsigned long long)fp);
}

static i128 at_scale(vx_dec d, int scale) { return (i128)d.m * POW10[scale - d.scale]; }

int vx_dec_cmp(const vx_dec *ap, const vx_dec *bp) {
    vx_dec a = *ap, b = *bp;
    int s = a.scale > b.scale ? a.scale : b.scale;
    i128 x = at_scale(a, s), y = at_scale(b, s);
    return (x > y) - (x < y);
}

static i128 div_floor(i128 a, i128 b) {
    i128 q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
    return q;
}

int vx_dec_round_step(const vx_dec *xp, const vx_dec *basep, const vx_dec *stepp, int mode, vx_dec *out) {
    vx_dec x = *xp, base = *basep, step = *stepp;
    if (step.m <= 0) return -1;
    int s = x.scale;
    if (base.scale > s) s = base.scale;
    if (step.scale > s) s = step.scale;
    i128 xv = at_scale(x, s), bv = at_scale(base, s), sv = at_scale(step, s);
    i128 d = xv - bv;
    i128 q = div_floor(d, sv), r = d - q * sv;
    if (r != 0) {
        switch (mode) {
        case VX_ROUND_DOWN: break;
        case VX_ROUND_UP: q++; break;
        case VX_ROUND_NEAREST:
            /* ties away from zero, measured on the value itself */
            if (2 * r > sv || (2 * r == sv && xv > 0)) q++;
            break;
        default: return 1;
        }
    }
    return store(bv + q * sv, s, out);
}

static int product(vx_dec a, vx_dec b, i128 *p) {
    return __builtin_mul_overflow((i128)a.m, (i128)b.m, p) ? -1 : 0;
}

/* Sign of x*10^-sx - y*10^-sy for 128-bit x, y. -2 on overflow. */
static int cmp_scaled(i128 x, int sx, i128 y, int sy) {
    while (sx < sy) {
        if (__builtin_mul_overflow(x, (i128)10, &x)) return -2;
        sx++;
    }
    while (sy < sx) {
        if (__builtin_mul_overflow(y, (i128)10, &y)) return -2;
        sy++;
    }
    return (x > y) - (x < y);
}

int vx_dec_cmp_product(const vx_dec *ap, const vx_dec *bp, const vx_dec *cp) {
    vx_dec a = *ap, b = *bp, c = *cp;
    i128 p;
    if (product(a, b, &p) != 0) return -2;
    return cmp_scaled(p, a.scale + b.scale, c.m, c.scale);
}

int vx_dec_cmp_products(const vx_dec *ap, const vx_dec *bp, const vx_dec *cp, const vx_dec *dp) {
    vx_dec a = *ap, b = *bp, c = *cp, d = *dp;
    i128 p, q;
    if (product(a, b, &p) != 0 || product(c, d, &q) != 0) return -2;
    return cmp_scaled(p, a.scale + b.scale, q, c.scale + d.scale);
}

/* 10^n as a 128-bit integer, or -1 past 10^38. */
static i128 pow10_128(int n) {
    if (n < 0 || n > 38) return -1;
    i128 p = 1;
    while (n--) p *= 10;
    return p;
}

static int mul3(i128 a, i128 b, i128 c, i128 *out) {
    i128 t;
    if (__builtin_mul_overflow(a, b, &t) || __builtin_mul_overflow(t, c, out)) return -1;
    return 0;
}

int vx_dec_div_round_step(const vx_dec *ap, const vx_dec *bp, const vx_dec *basep, const vx_dec *stepp, int mode,
                          vx_dec *out) {
    vx_dec a = *ap, b = *bp, base = *basep, step = *stepp;
    if (step.m <= 0 || b.m <= 0) return -1;
    int s = base.scale > step.scale ? base.scale : step.scale;
    i128 bv = at_scale(base, s), sv = at_scale(step, s);
    /* k = floor((a/b - base) / step), everything over b.m * 10^(a.scale) to stay in integers */
    i128 p1 = pow10_128(b.scale + s), p2 = pow10_128(a.scale);
    if (p1 < 0 || p2 < 0) return -1;
    i128 x, y, den, num;
    if (__builtin_mul_overflow((i128)a.m, p1, &x) || mul3(bv, (i128)b.m, p2, &y) || mul3(sv, (i128)b.m, p2, &den))
        return -1;
    if (__builtin_sub_overflow(x, y, &num)) return -1;
    i128 k = div_floor(num, den), r = num - k * den;
    if (r != 0) {
        switch (mode) {
        case VX_ROUND_DOWN: break;
        case VX_ROUND_UP: k++; break;
        case VX_ROUND_NEAREST:
            if (2 * r >= den) k++;
            break;
        default: return 1;
        }
    }
    i128 v;
    if (__builtin_mul_overflow(k, sv, &v) || __builtin_add_overflow(v, bv, &v)) return -1;
    return store(v, s, out);
}
