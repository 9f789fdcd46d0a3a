/*
 * copyfmt.c — COPY text for numeric rows.
 */
#include "copyfmt.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double P10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12};

static int put_uint(uint64_t u, char *out) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    for (int i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    return n;
}

/* r·10^-k with r an integer below 2^53 and r/10^k == v exactly: the decimal
 * r·10^-k reads back as v (both are the correctly rounded value of the same
 * real number), and the smallest such k is the shortest fraction. */
int vx_format_double(double v, char *out) {
    if (isnan(v) || isinf(v)) return snprintf(out, 32, "%s", isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity");
    double a = fabs(v);
    if (a < 9007199254740992.0) {
        for (int k = 0; k <= 12; k++) {
            double m = a * P10[k];
            if (m >= 9007199254740992.0) break;
            double r = nearbyint(m);
            if (r / P10[k] != a) continue;
            uint64_t u = (uint64_t)r;
            int n = 0;
            if (v < 0) out[n++] = '-';
            uint64_t ip = u / (uint64_t)P10[k], fp = u % (uint64_t)P10[k];
            n += put_uint(ip, out + n);
            if (k > 0) {
                out[n++] = '.';
                char frac[16];
                int fl = put_uint(fp, frac);
                for (int z = fl; z < k; z++) out[n++] = '0';
                memcpy(out + n, frac, (size_t)fl);
                n += fl;
            }
            return n;
        }
    }
    /* beyond 12 places or 2^53: the fewest significant digits that read back */
    for (int prec = 15; prec < 17; prec++) {
        int n = snprintf(out, 32, "%.*g", prec, v);
        if (strtod(out, NULL) == v) return n;
    }
    return snprintf(out, 32, "%.17g", v);
}

size_t vx_copy_format(const double *vals, const unsigned char *kinds, int ncols, int nrows, char *out, size_t cap) {
    size_t n = 0;
    if ((size_t)ncols * (size_t)nrows * 32 > cap) return 0;
    for (int r = 0; r < nrows; r++) {
        for (int c = 0; c < ncols; c++) {
            double v = vals[(size_t)r * (size_t)ncols + (size_t)c];
            if (c) out[n++] = '\t';
            if (isnan(v)) {
                out[n++] = '\\';
                out[n++] = 'N';
            } else if (kinds[c] == 1 && fabs(v) < 9.2e18) {
                int64_t i = (int64_t)v;
                if (i < 0) {
                    out[n++] = '-';
                    n += (size_t)put_uint((uint64_t)(-i), out + n);
                } else {
                    n += (size_t)put_uint((uint64_t)i, out + n);
                }
            } else {
                n += (size_t)vx_format_double(v, out + n);
            }
        }
        out[n++] = '\n';
    }
    return n;
}

int vx_format_scaled(int64_t v, int scale, char *out) {
    int n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    if (v < 0) out[n++] = '-';
    uint64_t div = 1;
    for (int i = 0; i < scale; i++) div *= 10;
    n += put_uint(u / div, out + n);
    uint64_t frac = u % div;
    if (frac) {
        char digits[24];
        int len = 0;
        for (int i = 0; i < scale; i++) {
            digits[scale - 1 - i] = (char)('0' + frac % 10);
            frac /= 10;
        }
        len = scale;
        while (len > 0 && digits[len - 1] == '0') len--;
        out[n++] = '.';
        memcpy(out + n, digits, (size_t)len);
        n += len;
    }
    out[n] = '\0';
    return n;
}
