/*
 * sim.h — the simulated venue's core: orders, fills, positions and money
 * for one account, in integer units, driven by a price path.
 *
 * Everything that is money, price or quantity is an int64 in units of
 * 1e-8 (VX_SIM_SCALE): 60000.1 USDT is 6000010000000. Products go through
 * __int128; nothing is ever a double, so a long replay accumulates no
 * floating-point error. Fees and funding are rounded against the trader.
 *
 * Market data comes in as price ticks (vx_sim_tick) or as candles
 * (vx_sim_candle), which are walked as open → first extreme → second
 * extreme → close, the first extreme being the one adverse to the account's
 * position in that symbol (low first when long, high first when short; when
 * flat, the extreme farther from the open first). Orders placed between
 * ticks execute at the next tick: a market order at that price with the
 * symbol's adverse slippage; a limit order only when a later tick trades
 * through its price (strictly), at its price, as maker — or at once, as
 * taker, when it crosses on arrival (GTX is then rejected instead).
 *
 * Conditional orders (STOP/TAKE_PROFIT, their _MARKET forms, and
 * TRAILING_STOP_MARKET) trigger on the tick price (or on the mark price
 * with working_mark) — buy stops at or above
 * the stop, sell stops at or below, take-profits the other way — and then
 * execute at that same tick: a _MARKET form at the tick price with
 * slippage (a gap through the stop fills at the gap, not at the stop), a
 * limit form as a LIMIT at its price. close_position takes the whole
 * position at trigger time, reduce-only. They tie up no margin until then.
 *
 * Position modes: one-way (a signed position per symbol) and hedge (LONG
 * and SHORT positions side by side; an order names its side, and closing
 * orders never flip a side). Margin: cross (positions share the wallet;
 * liquidation when the account's cross equity falls to the maintenance
 * margin) or isolated per symbol (each position holds its own margin,
 * is liquidated on its own, and can lose no more than that margin).
 * Events accumulate in the engine until the caller drains them.
 */
#ifndef VX_SIM_H
#define VX_SIM_H

#include <stddef.h>
#include <stdint.h>

#define VX_SIM_SCALE 100000000LL
#define VX_SIM_MAX_SYMBOLS 64

typedef struct vx_sim vx_sim;

typedef struct vx_sim_symbol_cfg {
    char name[24];
    int64_t tick, step;              /* price and quantity grids */
    int64_t min_qty, max_qty, min_notional;
    int32_t maker_fee_ppm, taker_fee_ppm;
    int32_t maint_margin_ppm;        /* maintenance margin rate */
    int32_t liq_fee_ppm;             /* charged on the notional at liquidation */
    int32_t max_leverage;
    int32_t slippage_bps;            /* adverse slippage of market fills */
    int32_t impact_bps;              /* extra market slippage: impact_bps × order qty / candle volume */
    int32_t latency_ms;              /* an order takes part only from placement + latency */
    int32_t queue_ms;                /* a resting limit fills only once the price has been
                                        through it for this long (its place in the queue) */
} vx_sim_symbol_cfg;

enum { VX_SIM_BUY = 1, VX_SIM_SELL = -1 };
enum {
    VX_SIM_MARKET = 0,
    VX_SIM_LIMIT = 1,
    VX_SIM_STOP_MARKET = 2,          /* conditional: trigger at stop_price, then MARKET */
    VX_SIM_TAKE_PROFIT_MARKET = 3,
    VX_SIM_STOP = 4,                 /* conditional: trigger at stop_price, then LIMIT at price */
    VX_SIM_TAKE_PROFIT = 5,
    VX_SIM_TRAILING_STOP_MARKET = 6, /* trails the best price by callback_ppm after activation */
};
enum { VX_SIM_GTC = 0, VX_SIM_IOC = 1, VX_SIM_FOK = 2, VX_SIM_GTX = 3 };
enum { VX_SIM_BOTH = 0, VX_SIM_LONG = 1, VX_SIM_SHORT = 2 }; /* position sides (hedge mode: LONG/SHORT) */
enum { VX_SIM_NEW = 0, VX_SIM_PARTIALLY_FILLED, VX_SIM_FILLED, VX_SIM_CANCELED, VX_SIM_EXPIRED, VX_SIM_REJECTED };
enum { VX_SIM_EV_ORDER = 1, VX_SIM_EV_FILL = 2, VX_SIM_EV_ACCOUNT = 3, VX_SIM_EV_FUNDING = 4, VX_SIM_EV_LIQUIDATION = 5 };

/* Venue error codes for refusals (the same numbers the live venue uses). */
enum {
    VX_SIM_ERR_MARGIN = -2019,       /* Margin is insufficient */
    VX_SIM_ERR_REDUCE_ONLY = -2022,  /* ReduceOnly Order is rejected */
    VX_SIM_ERR_UNKNOWN_ORDER = -2011,
    VX_SIM_ERR_PRICE = -4014,        /* price not on the tick grid */
    VX_SIM_ERR_QTY = -4003,          /* quantity out of range or off the step grid */
    VX_SIM_ERR_NOTIONAL = -4164,     /* below min notional */
    VX_SIM_ERR_GTX = -5022,          /* post-only would take */
    VX_SIM_ERR_SYMBOL = -1121,
    VX_SIM_ERR_PARAM = -1102,
    VX_SIM_ERR_LEVERAGE = -4028,
    VX_SIM_ERR_POSITION_SIDE = -4061, /* position side does not match the position mode */
    VX_SIM_ERR_REDUCE_IN_HEDGE = -1106, /* reduceOnly is not sent in hedge mode */
    VX_SIM_ERR_MODE_OPEN = -4068,     /* mode change with positions or orders open */
    VX_SIM_ERR_MARGIN_TYPE_OPEN = -4048, /* margin type change with a position or orders */
};

typedef struct vx_sim_order_req {
    int32_t symbol;
    int32_t side;          /* VX_SIM_BUY / VX_SIM_SELL */
    int32_t type;          /* VX_SIM_MARKET / VX_SIM_LIMIT */
    int32_t tif;
    int64_t price;         /* LIMIT, STOP, TAKE_PROFIT */
    int64_t qty;           /* 0 with close_position */
    int64_t stop_price;    /* conditional orders */
    int64_t activation_price; /* trailing stop; 0 = active at once */
    int32_t callback_ppm;  /* trailing stop: 1% = 10000 */
    int32_t reduce_only;
    int32_t close_position; /* conditional: close the whole position when triggered */
    int32_t position_side;  /* VX_SIM_BOTH in one-way mode; LONG or SHORT in hedge mode */
    int32_t working_mark;   /* conditional orders: trigger on the mark price (MARK_PRICE), not the last trade */
    char client_id[40];
} vx_sim_order_req;

typedef struct vx_sim_event {
    int32_t kind;
    int32_t symbol;
    int64_t time_ms;
    int64_t order_id;
    char client_id[40];
    int32_t side, type, status;
    int32_t maker;         /* fills: 1 when maker */
    int64_t price;         /* order price, or the fill price */
    int64_t qty;           /* order quantity, or the fill quantity */
    int64_t filled;        /* cumulative filled */
    int64_t avg_price;
    int64_t fee;
    int64_t realized_pnl;
    int64_t trade_id;
    int64_t wallet;        /* account and position after the event */
    int64_t position;      /* signed */
    int64_t entry_price;
    int32_t reason;        /* rejections: the venue error code */
    int32_t position_side;
    int64_t isolated_margin; /* the position's own margin when isolated */
} vx_sim_event;

typedef struct vx_sim_position {
    int64_t qty;           /* signed: long > 0 */
    int64_t entry_price;
    int64_t last_price;    /* the mark price when one is set, else the last trade */
    int32_t leverage;
    int32_t isolated;
    int64_t isolated_margin;
} vx_sim_position;

vx_sim *vx_sim_new(int64_t wallet);
void vx_sim_free(vx_sim *s);
/* Returns the symbol's index, or -1 (table full / bad config). */
int vx_sim_add_symbol(vx_sim *s, const vx_sim_symbol_cfg *cfg);
int vx_sim_set_leverage(vx_sim *s, int symbol, int leverage);
/* Isolated (1) or cross (0) margin for a symbol: only with no position or order in it. */
int vx_sim_set_isolated(vx_sim *s, int symbol, int isolated);
/* Hedge (1: separate LONG and SHORT positions) or one-way (0): only when flat with no orders. */
int vx_sim_set_hedge(vx_sim *s, int hedge);

/* Place: the order id (> 0), or a negative venue error code. A refused
 * order also produces a REJECTED order event. */
int64_t vx_sim_place(vx_sim *s, const vx_sim_order_req *req, int64_t now_ms);
int vx_sim_cancel(vx_sim *s, int64_t order_id, int64_t now_ms);

/* Market data: one traded price, or a candle walked as described above. */
void vx_sim_tick(vx_sim *s, int symbol, int64_t price, int64_t time_ms);
void vx_sim_candle(vx_sim *s, int symbol, int64_t open_time, int64_t o, int64_t h, int64_t l, int64_t c,
                   int64_t interval_ms);
/* The same with the candle's volume, for size-proportional slippage (the
 * volume stays in force until the next candle). */
void vx_sim_candle_v(vx_sim *s, int symbol, int64_t open_time, int64_t o, int64_t h, int64_t l, int64_t c,
                     int64_t volume, int64_t interval_ms);
/* The mark price: unrealized PnL, margin and liquidation are valued at it,
 * and MARK_PRICE conditional orders trigger on it (they then execute at the
 * last traded price). Until a mark arrives the last trade stands in. */
void vx_sim_mark(vx_sim *s, int symbol, int64_t mark, int64_t time_ms);
/* Settle funding: rate in 1e-8 (0.0001 = 10000), at the mark price. */
void vx_sim_funding(vx_sim *s, int symbol, int64_t rate, int64_t mark, int64_t time_ms);

/* Events since the last drain (valid until the next call into the engine). */
const vx_sim_event *vx_sim_events(vx_sim *s, size_t *n);
void vx_sim_clear_events(vx_sim *s);

int64_t vx_sim_wallet(const vx_sim *s);
/* Wallet + unrealized PnL at the last prices. */
int64_t vx_sim_equity(const vx_sim *s);
/* Equity minus the initial margin of positions and open orders. */
int64_t vx_sim_available(const vx_sim *s);
/* The one-way position (VX_SIM_BOTH), or one side in hedge mode. */
vx_sim_position vx_sim_position_of(const vx_sim *s, int symbol);
vx_sim_position vx_sim_position_side(const vx_sim *s, int symbol, int side);
/* Restoring a saved paper account: the wallet, and a position as it was
 * (quantity, entry price, leverage, last price). Open orders are placed
 * again by the caller. */
void vx_sim_restore(vx_sim *s, int64_t wallet, int64_t next_order_id);
/* Move the order and trade id counters forward (never back): a restored
 * account continues its ids, and a replay run gets a range of its own. */
void vx_sim_set_ids(vx_sim *s, int64_t next_order_id, int64_t next_trade_id);
int64_t vx_sim_next_trade_id(const vx_sim *s);
int vx_sim_restore_position(vx_sim *s, int symbol, int side, int64_t qty, int64_t entry, int32_t leverage,
                            int64_t last_price, int32_t isolated, int64_t isolated_margin);
void vx_sim_restore_mode(vx_sim *s, int hedge);

/* Unrealized PnL of one position side at the mark (or last) price. */
int64_t vx_sim_unrealized(const vx_sim *s, int symbol, int side);
size_t vx_sim_open_orders(const vx_sim *s);

#endif
