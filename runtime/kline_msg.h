/*
 * kline_msg.h — the hot stream message, parsed in C: a venue kline event
 * (Binance/Aster shape, raw or wrapped in a combined-stream envelope) into a
 * flat struct that Lua reads through FFI without building tables.
 *
 *   {"e":"kline","E":…,"s":"BTCUSDT","k":{"t":…,"T":…,"s":…,"i":"1m","o":"…",
 *    "c":"…","h":"…","l":"…","v":"…","n":…,"x":false,"q":"…","V":"…","Q":"…"}}
 *   {"stream":"btcusdt@kline_1m","data":{…the above…}}
 *
 * Anything else (another event, malformed JSON, a missing field) returns 0
 * and the caller falls back to the general JSON decoder, which reports
 * malformed input with a position.
 */
#ifndef VX_KLINE_MSG_H
#define VX_KLINE_MSG_H

#include <stddef.h>
#include <stdint.h>

typedef struct vx_kline_msg {
    int64_t event_time;
    int64_t open_time;
    int64_t close_time;
    int64_t trades;
    double open, high, low, close;
    double volume, quote_volume, taker_buy_volume, taker_buy_quote_volume;
    int32_t closed;
    char symbol[32];
    char interval[8];
    char stream[64];
} vx_kline_msg;

/* The two other hot market messages: the mark price (with the funding rate)
 * and the best bid/ask. */
typedef struct vx_quote_msg {
    int64_t event_time;
    int64_t next_funding_time;
    double mark, index_price, funding_rate;
    double bid, bid_qty, ask, ask_qty;
    char symbol[32];
} vx_quote_msg;

enum { VX_MSG_OTHER = 0, VX_MSG_KLINE = 1, VX_MSG_MARK = 2, VX_MSG_BOOK = 3 };

/* Which hot message s[0..n) is (a kline into k, a markPriceUpdate or a
 * bookTicker into q), or VX_MSG_OTHER for anything else, malformed input
 * included. The event's "e" must precede its other one-letter fields (as
 * venues send it); otherwise the message is left to the general decoder. */
int vx_market_msg_parse(const char *s, size_t n, vx_kline_msg *k, vx_quote_msg *q);

/* 1 when s[0..n) is a complete kline event (all of t T s i o h l c v x
 * present), 0 otherwise. Never reads outside s[0..n). */
int vx_kline_msg_parse(const char *s, size_t n, vx_kline_msg *out);

#endif
