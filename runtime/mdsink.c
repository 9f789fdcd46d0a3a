/*
 * mdsink.c — market stream frames into candle buffers and quote slots. See
 * mdsink.h.
 *
 * The lookups are two small open-addressing tables (FNV-1a of the symbol,
 * and of symbol + interval for routes); a frame costs one scan of its text
 * (kline_msg.c), one hash probe and one candle update.
 */
#include "mdsink.h"

#include <string.h>

size_t vx_md_sink_sizeof(void) { return sizeof(vx_md_sink); }

void vx_md_sink_init(vx_md_sink *s) { memset(s, 0, sizeof *s); }

static uint32_t fnv(const char *a, const char *b) {
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)a; *p; p++) h = (h ^ *p) * 16777619u;
    if (b) {
        h = (h ^ 0xff) * 16777619u; /* a separator no symbol byte can be */
        for (const unsigned char *p = (const unsigned char *)b; *p; p++) h = (h ^ *p) * 16777619u;
    }
    return h;
}

static int fits(const char *name, size_t cap) { return name && name[0] && strlen(name) < cap; }

int vx_md_sink_find(const vx_md_sink *s, const char *symbol, const char *interval) {
    if (!fits(symbol, sizeof s->routes[0].symbol) || !fits(interval, sizeof s->routes[0].interval)) return -1;
    for (uint32_t h = fnv(symbol, interval) & (VX_MD_HASH - 1);; h = (h + 1) & (VX_MD_HASH - 1)) {
        int i = s->route_at[h] - 1;
        if (i < 0) return -1;
        const vx_md_route *r = &s->routes[i];
        if (!strcmp(r->symbol, symbol) && !strcmp(r->interval, interval)) return i;
    }
}

int vx_md_sink_route(vx_md_sink *s, const char *symbol, const char *interval, vx_candles *c) {
    if (!c || !fits(symbol, sizeof s->routes[0].symbol) || !fits(interval, sizeof s->routes[0].interval)) return -1;
    int i = vx_md_sink_find(s, symbol, interval);
    if (i < 0) {
        if (s->nroutes == VX_MD_MAX_ROUTES) return -1;
        i = s->nroutes++;
        vx_md_route *r = &s->routes[i];
        memset(r, 0, sizeof *r);
        strcpy(r->symbol, symbol);
        strcpy(r->interval, interval);
        uint32_t h = fnv(symbol, interval) & (VX_MD_HASH - 1);
        while (s->route_at[h]) h = (h + 1) & (VX_MD_HASH - 1);
        s->route_at[h] = (int16_t)(i + 1);
    }
    vx_md_route *r = &s->routes[i];
    r->candles = c;
    r->live = 1;
    r->last_open = c->len ? (int64_t)c->t[c->start + c->len - 1] : -1;
    return i;
}

int vx_md_sink_unroute(vx_md_sink *s, const char *symbol, const char *interval) {
    int i = vx_md_sink_find(s, symbol, interval);
    if (i < 0) return -1;
    /* the slot stays (the hash keeps pointing at it); it just stops taking frames */
    s->routes[i].live = 0;
    s->routes[i].candles = NULL;
    return 0;
}

int vx_md_sink_pause(vx_md_sink *s, int route, int paused) {
    if (route < 0 || route >= s->nroutes) return -1;
    s->routes[route].paused = paused ? 1 : 0;
    return 0;
}

static int find_quote(const vx_md_sink *s, const char *symbol) {
    for (uint32_t h = fnv(symbol, NULL) & (VX_MD_HASH - 1);; h = (h + 1) & (VX_MD_HASH - 1)) {
        int i = s->quote_at[h] - 1;
        if (i < 0) return -1;
        if (!strcmp(s->quotes[i].symbol, symbol)) return i;
    }
}

int vx_md_sink_quote(vx_md_sink *s, const char *symbol) {
    if (!fits(symbol, sizeof s->quotes[0].symbol)) return -1;
    int i = find_quote(s, symbol);
    if (i >= 0) return i;
    if (s->nquotes == VX_MD_MAX_QUOTES) return -1;
    i = s->nquotes++;
    memset(&s->quotes[i], 0, sizeof s->quotes[i]);
    strcpy(s->quotes[i].symbol, symbol);
    uint32_t h = fnv(symbol, NULL) & (VX_MD_HASH - 1);
    while (s->quote_at[h]) h = (h + 1) & (VX_MD_HASH - 1);
    s->quote_at[h] = (int16_t)(i + 1);
    return i;
}

static int apply_kline(vx_md_sink *s) {
    const vx_kline_msg *k = &s->k;
    int i = vx_md_sink_find(s, k->symbol, k->interval);
    if (i < 0) return 0;
    vx_md_route *r = &s->routes[i];
    if (!r->live || r->paused) return 0;
    int rc = vx_candles_update(r->candles, (double)k->open_time, k->open, k->high, k->low, k->close, k->volume,
                               k->quote_volume, (double)k->trades, k->closed);
    if (rc < 0) {
        s->refused++;
        return 0; /* Lua takes it the slow way and reports why */
    }
    if (k->open_time > r->last_open) r->last_open = k->open_time;
    r->updates++;
    return 1;
}

static int apply_quote(vx_md_sink *s, int kind) {
    const vx_quote_msg *q = &s->q;
    int i = find_quote(s, q->symbol);
    if (i < 0) return 0;
    vx_md_quote *d = &s->quotes[i];
    if (kind == VX_MSG_MARK) {
        d->mark = q->mark;
        d->index_price = q->index_price;
        d->funding_rate = q->funding_rate;
        d->next_funding_time = q->next_funding_time;
        d->mark_time = q->event_time;
        d->marks++;
    } else {
        d->bid = q->bid;
        d->bid_qty = q->bid_qty;
        d->ask = q->ask;
        d->ask_qty = q->ask_qty;
        d->book_time = q->event_time;
        d->books++;
    }
    return 1;
}

int vx_md_sink_offer(vx_md_sink *s, const char *p, size_t n) {
    s->frames++;
    int kind = vx_market_msg_parse(p, n, &s->k, &s->q);
    int taken = 0;
    if (kind == VX_MSG_KLINE) taken = apply_kline(s);
    else if (kind == VX_MSG_MARK || kind == VX_MSG_BOOK) taken = apply_quote(s, kind);
    if (taken) s->applied++;
    else s->passed++;
    return taken;
}
