/*
 * buf.c — growable byte buffer. Allocation failure is sticky (b->oom) so
 * that callers building a line can check once at the end instead of after
 * every append.
 */
#include "buf.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void vx_buf_init(vx_buf *b) { memset(b, 0, sizeof *b); }

void vx_buf_free(vx_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

void vx_buf_reset(vx_buf *b) {
    b->len = 0;
    b->oom = 0;
}

int vx_buf_reserve(vx_buf *b, size_t extra) {
    if (b->oom) return -1;
    if (b->len + extra + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void vx_buf_add(vx_buf *b, const void *p, size_t n) {
    if (n == 0 || vx_buf_reserve(b, n) != 0) return;
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

void vx_buf_adds(vx_buf *b, const char *s) { vx_buf_add(b, s, strlen(s)); }

void vx_buf_addc(vx_buf *b, char c) {
    if (vx_buf_reserve(b, 1) != 0) return;
    b->p[b->len++] = c;
}

void vx_buf_addf(vx_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        vx_buf_add(b, tmp, (size_t)n);
        return;
    }
    if (vx_buf_reserve(b, (size_t)n) != 0) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void vx_buf_add_json_escaped(vx_buf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f) continue;
        vx_buf_add(b, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': vx_buf_add(b, "\\\"", 2); break;
        case '\\': vx_buf_add(b, "\\\\", 2); break;
        case '\n': vx_buf_add(b, "\\n", 2); break;
        case '\r': vx_buf_add(b, "\\r", 2); break;
        case '\t': vx_buf_add(b, "\\t", 2); break;
        default: {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            vx_buf_add(b, e, 6);
        }
        }
    }
    vx_buf_add(b, s + run, n - run);
}

void vx_buf_add_number(vx_buf *b, double v, const char *nan, const char *pinf, const char *ninf) {
    if (isnan(v)) {
        vx_buf_adds(b, nan);
    } else if (isinf(v)) {
        vx_buf_adds(b, v > 0 ? pinf : ninf);
    } else if (v == (double)(int64_t)v && fabs(v) < 9007199254740992.0) {
        vx_buf_addf(b, "%lld", (long long)v);
    } else {
        /* shortest of 15..17 digits that reads back as the same double */
        char tmp[32];
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(tmp, sizeof tmp, "%.*g", prec, v);
            if (strtod(tmp, NULL) == v) break;
        }
        vx_buf_adds(b, tmp);
    }
}

const char *vx_buf_cstr(vx_buf *b) {
    if (vx_buf_reserve(b, 0) != 0) return "";
    b->p[b->len] = '\0';
    return b->p;
}
