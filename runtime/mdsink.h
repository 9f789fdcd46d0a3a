/*
 * mdsink.h — a market-data sink: WebSocket frames straight into candle
 * buffers and quote slots, in C, without a Lua string or table per frame.
 *
 * A venue's market streams carry three hot messages: klines, mark prices
 * (with the funding rate) and the best bid/ask. The sink holds routes
 * (symbol + interval -> a candle series, see candles.h) and quote slots
 * (symbol -> mark, funding, bid, ask). A WebSocket connection with a sink
 * attached (ws_lua.c) offers every frame to it first; a frame the sink
 * applies never reaches Lua, anything else (other events, replies,
 * malformed text, a candle the buffer refuses, a paused route) goes on to
 * Lua as before, where the general path reports it.
 *
 * A route can be paused: while the streams fetch the candles missed during
 * a disconnect over REST, live frames of that route queue in Lua behind the
 * backfill instead of overtaking it (see vibex.exchange.streams).
 *
 * The struct is read directly through LuaJIT FFI (counters, quotes, routes'
 * last open times), so its layout is declared in vibex/marketdata.lua too;
 * vx_md_sink_sizeof lets that declaration check itself at load.
 */
#ifndef VX_MDSINK_H
#define VX_MDSINK_H

#include <stddef.h>
#include <stdint.h>

#include "candles.h"
#include "kline_msg.h"

#define VX_MD_MAX_ROUTES 256
#define VX_MD_MAX_QUOTES 256
#define VX_MD_HASH 1024 /* open addressing, a power of two well above the routes */

typedef struct vx_md_quote {
    double mark, index_price, funding_rate;
    double bid, bid_qty, ask, ask_qty;
    int64_t mark_time, next_funding_time, book_time;
    int64_t marks, books;  /* updates applied */
    char symbol[24];
} vx_md_quote;

typedef struct vx_md_route {
    vx_candles *candles;
    int64_t last_open;    /* newest open time applied; -1 before the first */
    int64_t updates;      /* frames applied */
    int32_t paused;       /* frames go to Lua instead */
    int32_t live;         /* 0 once removed */
    char symbol[24];
    char interval[8];
} vx_md_route;

typedef struct vx_md_sink {
    int32_t nroutes, nquotes;
    uint64_t frames;      /* offered */
    uint64_t applied;     /* taken (kline, mark or book) */
    uint64_t refused;     /* a kline the buffer refused (left to Lua, which logs it) */
    uint64_t passed;      /* not for the sink: went to Lua */
    vx_md_route routes[VX_MD_MAX_ROUTES];
    vx_md_quote quotes[VX_MD_MAX_QUOTES];
    int16_t route_at[VX_MD_HASH]; /* index + 1, 0 = empty */
    int16_t quote_at[VX_MD_HASH];
    vx_kline_msg k;       /* scratch for the parser */
    vx_quote_msg q;
} vx_md_sink;

void vx_md_sink_init(vx_md_sink *s);
size_t vx_md_sink_sizeof(void);

/* Route klines of symbol/interval into c (which must outlive the route).
 * Returns the route's index, or -1 when the table is full or the names are
 * too long. Routing an existing pair again replaces its series. */
int vx_md_sink_route(vx_md_sink *s, const char *symbol, const char *interval, vx_candles *c);
/* Stop routing a pair (its frames go to Lua); 0, or -1 if unknown. */
int vx_md_sink_unroute(vx_md_sink *s, const char *symbol, const char *interval);
/* Pause (1) or resume (0) every route of a symbol/interval; -1 if unknown. */
int vx_md_sink_pause(vx_md_sink *s, int route, int paused);
/* The quote slot of a symbol (created on first use): index, or -1. */
int vx_md_sink_quote(vx_md_sink *s, const char *symbol);
/* Index of a route, or -1. */
int vx_md_sink_find(const vx_md_sink *s, const char *symbol, const char *interval);

/* Offer one frame: 1 when the sink applied it, 0 when Lua should have it. */
int vx_md_sink_offer(vx_md_sink *s, const char *p, size_t n);

#endif
