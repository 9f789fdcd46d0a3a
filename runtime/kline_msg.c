/*
 * kline_msg.c — a small, strict JSON scanner specialised for kline events.
 *
 * Generic JSON decoding builds a table per object and a string per value;
 * for the one message that arrives hundreds of times a second per symbol we
 * only need a dozen fields as numbers. The scanner walks the text once,
 * skipping values it does not want (nested objects, arrays, escapes) and
 * converting the wanted decimal strings with an exact fast path.
 */
#include "kline_msg.h"

#include <stdlib.h>
#include <string.h>

typedef struct scan {
    const char *p, *end;
} scan;

enum { F_T = 1, F_TT = 2, F_S = 4, F_I = 8, F_O = 16, F_H = 32, F_L = 64, F_C = 128, F_V = 256, F_X = 512 };
#define F_ALL (F_T | F_TT | F_S | F_I | F_O | F_H | F_L | F_C | F_V | F_X)

/* Character classes, one table lookup a byte: white space, the bytes a
 * bare JSON number may hold, and the bytes of true/false/null. */
enum { CC_WS = 1, CC_NUM = 2, CC_WORD = 4 };
static const unsigned char CC[256] = {
    [' '] = CC_WS, ['\n'] = CC_WS, ['\r'] = CC_WS, ['\t'] = CC_WS,
    ['0'] = CC_NUM, ['1'] = CC_NUM, ['2'] = CC_NUM, ['3'] = CC_NUM, ['4'] = CC_NUM, ['5'] = CC_NUM,
    ['6'] = CC_NUM, ['7'] = CC_NUM, ['8'] = CC_NUM, ['9'] = CC_NUM, ['+'] = CC_NUM, ['-'] = CC_NUM,
    ['.'] = CC_NUM, ['e'] = CC_NUM | CC_WORD, ['E'] = CC_NUM,
    ['a'] = CC_WORD, ['f'] = CC_WORD, ['l'] = CC_WORD, ['n'] = CC_WORD, ['r'] = CC_WORD, ['s'] = CC_WORD,
    ['t'] = CC_WORD, ['u'] = CC_WORD,
};

static void skip_ws(scan *s) {
    while (s->p < s->end && (CC[(unsigned char)*s->p] & CC_WS)) s->p++;
}

static int expect(scan *s, char c) {
    skip_ws(s);
    if (s->p >= s->end || *s->p != c) return 0;
    s->p++;
    return 1;
}

/* A string: on success *a..*b is its raw content (escapes left as they are). */
static int read_string(scan *s, const char **a, const char **b) {
    if (!expect(s, '"')) return 0;
    const char *q = s->p;
    while (q < s->end && *q != '"') {
        if (*q == '\\') q++;
        else if ((unsigned char)*q < 0x20) return 0;
        q++;
    }
    if (q >= s->end) return 0;
    *a = s->p;
    *b = q;
    s->p = q + 1;
    return 1;
}

static int skip_value(scan *s, int depth);

static int skip_container(scan *s, char open, char close, int depth) {
    if (depth > 32 || !expect(s, open)) return 0;
    skip_ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        return 1;
    }
    for (;;) {
        const char *a, *b;
        if (open == '{' && (!read_string(s, &a, &b) || !expect(s, ':'))) return 0;
        if (!skip_value(s, depth + 1)) return 0;
        skip_ws(s);
        if (s->p >= s->end) return 0;
        if (*s->p == close) {
            s->p++;
            return 1;
        }
        if (*s->p++ != ',') return 0;
    }
}

static int skip_value(scan *s, int depth) {
    skip_ws(s);
    if (s->p >= s->end) return 0;
    const char *a, *b;
    switch (*s->p) {
    case '"': return read_string(s, &a, &b);
    case '{': return skip_container(s, '{', '}', depth);
    case '[': return skip_container(s, '[', ']', depth);
    default: break;
    }
    const char *q = s->p;
    while (q < s->end && (CC[(unsigned char)*q] & (CC_NUM | CC_WORD))) q++;
    if (q == s->p) return 0;
    s->p = q;
    return 1;
}

/* An integer (a JSON number without fraction), as venues send times and counts. */
static int read_int(scan *s, int64_t *out) {
    skip_ws(s);
    const char *q = s->p;
    int neg = q < s->end && *q == '-';
    if (neg) q++;
    if (q >= s->end || *q < '0' || *q > '9') return 0;
    int64_t v = 0;
    while (q < s->end && *q >= '0' && *q <= '9') {
        if (v > (INT64_MAX - 9) / 10) return 0;
        v = v * 10 + (*q++ - '0');
    }
    if (q < s->end && (*q == '.' || *q == 'e' || *q == 'E')) return 0;
    *out = neg ? -v : v;
    s->p = q;
    return 1;
}

static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                               1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* A decimal in [a, b). Digits with at most 15 significant figures are exact
 * integers in a double, and dividing two exact doubles rounds correctly, so
 * the fast path gives the same double as strtod; anything longer goes to
 * strtod on a bounded copy. */
static int parse_decimal(const char *a, const char *b, double *out) {
    const char *q = a;
    int neg = q < b && *q == '-';
    if (neg) q++;
    uint64_t m = 0;
    int digits = 0, frac = 0, seen_dot = 0, any = 0;
    for (; q < b; q++) {
        if (*q >= '0' && *q <= '9') {
            any = 1;
            if (m == 0 && *q == '0' && !seen_dot) continue;
            if (++digits > 15) goto slow;
            m = m * 10 + (uint64_t)(*q - '0');
            if (seen_dot) frac++;
        } else if (*q == '.' && !seen_dot) {
            seen_dot = 1;
        } else {
            goto slow;
        }
    }
    if (!any) return 0;
    *out = (neg ? -1.0 : 1.0) * ((double)m / POW10[frac]);
    return 1;
slow: {
    char tmp[64];
    size_t n = (size_t)(b - a);
    if (n == 0 || n >= sizeof tmp) return 0;
    memcpy(tmp, a, n);
    tmp[n] = '\0';
    char *e;
    *out = strtod(tmp, &e);
    return *e == '\0';
}
}

static int read_decimal(scan *s, double *out) {
    const char *a, *b;
    skip_ws(s);
    if (s->p < s->end && *s->p == '"') return read_string(s, &a, &b) && parse_decimal(a, b, out);
    const char *q = s->p;
    while (q < s->end && (CC[(unsigned char)*q] & CC_NUM)) q++;
    if (q == s->p || !parse_decimal(s->p, q, out)) return 0;
    s->p = q;
    return 1;
}

static int read_name(scan *s, char *dst, size_t cap) {
    const char *a, *b;
    if (!read_string(s, &a, &b) || (size_t)(b - a) >= cap || memchr(a, '\\', (size_t)(b - a))) return 0;
    memcpy(dst, a, (size_t)(b - a));
    dst[b - a] = '\0';
    return 1;
}

static int read_bool(scan *s, int32_t *out) {
    skip_ws(s);
    if (s->end - s->p >= 4 && !memcmp(s->p, "true", 4)) return *out = 1, s->p += 4, 1;
    if (s->end - s->p >= 5 && !memcmp(s->p, "false", 5)) return *out = 0, s->p += 5, 1;
    return 0;
}

/* One field of the "k" object. */
static int kline_field(scan *s, char key, vx_kline_msg *k, unsigned *seen) {
    switch (key) {
    case 't': *seen |= F_T; return read_int(s, &k->open_time);
    case 'T': *seen |= F_TT; return read_int(s, &k->close_time);
    case 's': *seen |= F_S; return read_name(s, k->symbol, sizeof k->symbol);
    case 'i': *seen |= F_I; return read_name(s, k->interval, sizeof k->interval);
    case 'o': *seen |= F_O; return read_decimal(s, &k->open);
    case 'h': *seen |= F_H; return read_decimal(s, &k->high);
    case 'l': *seen |= F_L; return read_decimal(s, &k->low);
    case 'c': *seen |= F_C; return read_decimal(s, &k->close);
    case 'v': *seen |= F_V; return read_decimal(s, &k->volume);
    case 'q': return read_decimal(s, &k->quote_volume);
    case 'V': return read_decimal(s, &k->taker_buy_volume);
    case 'Q': return read_decimal(s, &k->taker_buy_quote_volume);
    case 'n': return read_int(s, &k->trades);
    case 'x': *seen |= F_X; return read_bool(s, &k->closed);
    default: return skip_value(s, 1);
    }
}

/* Walk an object, calling field(key) for one-character keys and skipping
 * the rest; `wide` gets longer keys (the envelope's "stream"/"data"). */
typedef int (*field_fn)(scan *s, const char *key, size_t klen, void *ctx);

static int walk_object(scan *s, field_fn field, void *ctx) {
    if (!expect(s, '{')) return 0;
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') return s->p++, 1;
    for (;;) {
        const char *a, *b;
        if (!read_string(s, &a, &b) || !expect(s, ':')) return 0;
        if (!field(s, a, (size_t)(b - a), ctx)) return 0;
        skip_ws(s);
        if (s->p >= s->end) return 0;
        if (*s->p == '}') return s->p++, 1;
        if (*s->p++ != ',') return 0;
    }
}

typedef struct kctx {
    vx_kline_msg *k;
    unsigned seen;
    int is_kline;
} kctx;

static int k_field(scan *s, const char *key, size_t klen, void *ctx) {
    kctx *c = ctx;
    if (klen != 1) return skip_value(s, 1);
    return kline_field(s, key[0], c->k, &c->seen);
}

static int event_field(scan *s, const char *key, size_t klen, void *ctx) {
    kctx *c = ctx;
    if (klen == 1 && key[0] == 'e') {
        const char *a, *b;
        if (!read_string(s, &a, &b)) return 0;
        c->is_kline = b - a == 5 && !memcmp(a, "kline", 5);
        return 1;
    }
    if (klen == 1 && key[0] == 'E') return read_int(s, &c->k->event_time);
    if (klen == 1 && key[0] == 'k') return walk_object(s, k_field, c);
    return skip_value(s, 1);
}

static int envelope_field(scan *s, const char *key, size_t klen, void *ctx) {
    kctx *c = ctx;
    if (klen == 6 && !memcmp(key, "stream", 6)) return read_name(s, c->k->stream, sizeof c->k->stream);
    if (klen == 4 && !memcmp(key, "data", 4)) return walk_object(s, event_field, c);
    return event_field(s, key, klen, ctx);
}

int vx_kline_msg_parse(const char *text, size_t n, vx_kline_msg *out) {
    if (!text || !out) return 0;
    memset(out, 0, sizeof *out);
    scan s = {text, text + n};
    kctx c = {out, 0, 0};
    if (!walk_object(&s, envelope_field, &c)) return 0;
    skip_ws(&s);
    return s.p == s.end && c.is_kline && (c.seen & F_ALL) == F_ALL;
}

/* ---- the other hot market messages: mark price and book ticker ---------- */

enum { Q_E = 1, Q_S = 2, Q_P = 4, Q_R = 8, Q_B = 16, Q_A = 32 };

typedef struct mctx {
    vx_kline_msg *k;
    vx_quote_msg *q;
    unsigned kseen, qseen;
    int kind; /* from "e" */
    int has_k;
} mctx;

static int mk_field(scan *s, const char *key, size_t klen, void *ctx) {
    mctx *c = ctx;
    if (klen != 1) return skip_value(s, 1);
    return kline_field(s, key[0], c->k, &c->kseen);
}

static int kind_of(const char *a, const char *b) {
    size_t n = (size_t)(b - a);
    if (n == 5 && !memcmp(a, "kline", 5)) return VX_MSG_KLINE;
    if (n == 15 && !memcmp(a, "markPriceUpdate", 15)) return VX_MSG_MARK;
    if (n == 10 && !memcmp(a, "bookTicker", 10)) return VX_MSG_BOOK;
    return VX_MSG_OTHER;
}

/* Top-level fields of an event. One-letter keys mean different things in
 * different events, so the meaning follows "e" (venues send it first; a
 * message that does not is left to the general decoder). */
static int m_event_field(scan *s, const char *key, size_t klen, void *ctx) {
    mctx *c = ctx;
    if (klen != 1) return skip_value(s, 1);
    char ch = key[0];
    if (ch == 'e') {
        const char *a, *b;
        if (!read_string(s, &a, &b)) return 0;
        c->kind = kind_of(a, b);
        c->qseen |= Q_E;
        return 1;
    }
    if (!(c->qseen & Q_E)) return 0; /* "e" must come first */
    if (ch == 'E') return read_int(s, &c->k->event_time) && (c->q->event_time = c->k->event_time, 1);
    switch (c->kind) {
    case VX_MSG_KLINE:
        if (ch == 'k') return c->has_k = 1, walk_object(s, mk_field, c);
        return skip_value(s, 1);
    case VX_MSG_MARK:
        switch (ch) {
        case 's': c->qseen |= Q_S; return read_name(s, c->q->symbol, sizeof c->q->symbol);
        case 'p': c->qseen |= Q_P; return read_decimal(s, &c->q->mark);
        case 'i': return read_decimal(s, &c->q->index_price);
        case 'r': c->qseen |= Q_R; return read_decimal(s, &c->q->funding_rate);
        case 'T': return read_int(s, &c->q->next_funding_time);
        default: return skip_value(s, 1);
        }
    case VX_MSG_BOOK:
        switch (ch) {
        case 's': c->qseen |= Q_S; return read_name(s, c->q->symbol, sizeof c->q->symbol);
        case 'b': c->qseen |= Q_B; return read_decimal(s, &c->q->bid);
        case 'B': return read_decimal(s, &c->q->bid_qty);
        case 'a': c->qseen |= Q_A; return read_decimal(s, &c->q->ask);
        case 'A': return read_decimal(s, &c->q->ask_qty);
        default: return skip_value(s, 1);
        }
    default:
        return 0; /* not ours: stop scanning early */
    }
}

static int m_envelope_field(scan *s, const char *key, size_t klen, void *ctx) {
    mctx *c = ctx;
    if (klen == 6 && !memcmp(key, "stream", 6)) return read_name(s, c->k->stream, sizeof c->k->stream);
    if (klen == 4 && !memcmp(key, "data", 4)) return walk_object(s, m_event_field, c);
    return m_event_field(s, key, klen, ctx);
}

int vx_market_msg_parse(const char *text, size_t n, vx_kline_msg *k, vx_quote_msg *q) {
    if (!text || !k || !q) return VX_MSG_OTHER;
    /* only the fields that are read later are reset: the scanner fills the rest */
    k->trades = 0;
    k->quote_volume = k->taker_buy_volume = k->taker_buy_quote_volume = 0;
    k->stream[0] = '\0';
    memset(q, 0, sizeof *q);
    scan s = {text, text + n};
    mctx c = {k, q, 0, 0, VX_MSG_OTHER, 0};
    if (!walk_object(&s, m_envelope_field, &c)) return VX_MSG_OTHER;
    skip_ws(&s);
    if (s.p != s.end) return VX_MSG_OTHER;
    switch (c.kind) {
    case VX_MSG_KLINE: return c.has_k && (c.kseen & F_ALL) == F_ALL ? VX_MSG_KLINE : VX_MSG_OTHER;
    case VX_MSG_MARK: return (c.qseen & (Q_S | Q_P)) == (Q_S | Q_P) ? VX_MSG_MARK : VX_MSG_OTHER;
    case VX_MSG_BOOK: return (c.qseen & (Q_S | Q_B | Q_A)) == (Q_S | Q_B | Q_A) ? VX_MSG_BOOK : VX_MSG_OTHER;
    default: return VX_MSG_OTHER;
    }
}
