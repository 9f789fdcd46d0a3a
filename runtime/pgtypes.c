/*
 * pgtypes.c — parsing PostgreSQL's ISO date/time output without libc's
 * locale- and TZ-dependent functions.
 */
#include "pgtypes.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Era arithmetic: 400-year cycles of 146097 days, March-based years so
 * leap days fall last. */
int64_t vx_days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int digits(const char **p, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9') return 0;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return 1;
}

/* [+-]HH[:MM[:SS]] -> seconds east of UTC */
static int parse_offset(const char **p, int *secs) {
    int sign = **p == '-' ? -1 : 1, h, m = 0, s = 0;
    (*p)++;
    if (!digits(p, 2, &h)) return 0;
    if (**p == ':' && (++*p, !digits(p, 2, &m))) return 0;
    if (**p == ':' && (++*p, !digits(p, 2, &s))) return 0;
    *secs = sign * (h * 3600 + m * 60 + s);
    return 1;
}

double vx_pg_timestamp_ms(const char *s, int *ok) {
    *ok = 0;
    if (!s) return 0;
    if (!strcmp(s, "infinity")) return *ok = 1, HUGE_VAL;
    if (!strcmp(s, "-infinity")) return *ok = 1, -HUGE_VAL;
    const char *p = s;
    int y, mo, d, h = 0, mi = 0, sec = 0, off = 0;
    double frac = 0;
    if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' || !digits(&p, 2, &d)) return 0;
    if (mo < 1 || mo > 12 || d < 1 || d > 31) return 0;
    if (*p == ' ' || *p == 'T') {
        p++;
        if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi) || *p++ != ':' || !digits(&p, 2, &sec)) return 0;
        if (*p == '.') {
            double scale = 0.1;
            for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10) frac += (*p - '0') * scale;
        }
        if ((*p == '+' || *p == '-') && !parse_offset(&p, &off)) return 0;
    }
    if (*p) return 0; /* BC dates and anything else stay strings */
    int64_t secs = vx_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off;
    *ok = 1;
    /* whole milliseconds exactly; microseconds as the fraction */
    return (double)secs * 1000.0 + round(frac * 1e6) / 1e3;
}
