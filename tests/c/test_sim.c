/* test_sim.c — the simulated venue's core against hand-computed numbers.
 * Units: 1e-8 (60000.1 USDT = 6000010000000). */
#include "unit.h"
#include "sim.h"

#define U(x) ((int64_t)((x) * 1e8 + ((x) >= 0 ? 0.5 : -0.5))) /* exact for the literals used here */

static vx_sim *make(int64_t wallet, int slippage_bps, int *btc) {
    vx_sim *s = vx_sim_new(wallet);
    assert_non_null(s);
    vx_sim_symbol_cfg c = {.name = "BTCUSDT", .tick = U(0.1), .step = U(0.001), .min_qty = U(0.001),
                           .max_qty = U(100), .min_notional = U(5), .maker_fee_ppm = 200, .taker_fee_ppm = 400,
                           .maint_margin_ppm = 4000, .liq_fee_ppm = 15000, .max_leverage = 125,
                           .slippage_bps = slippage_bps};
    *btc = vx_sim_add_symbol(s, &c);
    assert_int_equal(*btc, 0);
    return s;
}

static vx_sim_order_req order(int sym, int side, int type, int tif, int64_t price, int64_t qty, int reduce) {
    vx_sim_order_req r = {.symbol = sym, .side = side, .type = type, .tif = tif, .price = price, .qty = qty,
                          .reduce_only = reduce};
    snprintf(r.client_id, sizeof r.client_id, "t-%d-%lld", side, (long long)qty);
    return r;
}

static const vx_sim_event *last_of(vx_sim *s, int kind) {
    size_t n;
    const vx_sim_event *ev = vx_sim_events(s, &n);
    for (size_t i = n; i-- > 0;)
        if (ev[i].kind == kind) return &ev[i];
    return NULL;
}

/* market buy at the next price with slippage and the taker fee; limit sell
 * filled only when traded through, at its price, as maker */
static void test_market_then_limit_round_trip(void **state) {
    (void)state;
    int btc;
    vx_sim *s = make(U(10000), 5, &btc);
    assert_int_equal(vx_sim_set_leverage(s, btc, 10), 0);
    vx_sim_tick(s, btc, U(60000), 1000);
    vx_sim_order_req m = order(btc, VX_SIM_BUY, VX_SIM_MARKET, VX_SIM_GTC, 0, U(0.010), 0);
    assert_true(vx_sim_place(s, &m, 1001) > 0);
    assert_int_equal(vx_sim_position_of(s, btc).qty, 0); /* nothing until the next price */
    vx_sim_tick(s, btc, U(60010), 2000);
    /* 60010 + 5 bps = 60040.005, rounded up to the tick: 60040.1; fee 600.401 × 0.04% */
    const vx_sim_event *f = last_of(s, VX_SIM_EV_FILL);
    assert_non_null(f);
    assert_int_equal(f->price, U(60040.1));
    assert_int_equal(f->fee, U(0.2401604));
    assert_int_equal(f->maker, 0);
    assert_int_equal(vx_sim_wallet(s), U(10000) - U(0.2401604));
    vx_sim_position p = vx_sim_position_of(s, btc);
    assert_int_equal(p.qty, U(0.010));
    assert_int_equal(p.entry_price, U(60040.1));
    vx_sim_clear_events(s);

    vx_sim_order_req l = order(btc, VX_SIM_SELL, VX_SIM_LIMIT, VX_SIM_GTC, U(60100), U(0.010), 0);
    assert_true(vx_sim_place(s, &l, 2001) > 0);
    vx_sim_tick(s, btc, U(60100), 3000); /* touched, not traded through */
    assert_int_equal(vx_sim_open_orders(s), 1);
    vx_sim_tick(s, btc, U(60100.1), 4000);
    f = last_of(s, VX_SIM_EV_FILL);
    assert_non_null(f);
    assert_int_equal(f->price, U(60100));
    assert_int_equal(f->maker, 1);
    /* realized (60100 − 60040.1) × 0.010 = 0.599; maker fee 601 × 0.02% = 0.1202 */
    assert_int_equal(f->realized_pnl, U(0.599));
    assert_int_equal(f->fee, U(0.1202));
    assert_int_equal(vx_sim_wallet(s), U(10000) - U(0.2401604) + U(0.599) - U(0.1202));
    assert_int_equal(vx_sim_position_of(s, btc).qty, 0);
    assert_int_equal(vx_sim_open_orders(s), 0);
    vx_sim_free(s);
}

static void test_refusals(void **state) {
    (void)state;
    int btc;
    vx_sim *s = make(U(100), 0, &btc);
    assert_int_equal(vx_sim_set_leverage(s, btc, 1), 0);
    assert_int_equal(vx_sim_set_leverage(s, btc, 126), VX_SIM_ERR_LEVERAGE);
    vx_sim_tick(s, btc, U(60000), 1000);
    vx_sim_order_req r = order(btc, VX_SIM_SELL, VX_SIM_MARKET, VX_SIM_GTC, 0, U(0.001), 1);
    assert_int_equal(vx_sim_place(s, &r, 1001), VX_SIM_ERR_REDUCE_ONLY); /* nothing to reduce */
    r = order(btc, VX_SIM_BUY, VX_SIM_MARKET, VX_SIM_GTC, 0, U(0.010), 0);
    assert_int_equal(vx_sim_place(s, &r, 1002), VX_SIM_ERR_MARGIN); /* 600 notional on 100 at 1x */
    r = order(btc, VX_SIM_BUY, VX_SIM_LIMIT, VX_SIM_GTX, U(60000), U(0.001), 0);
    assert_int_equal(vx_sim_place(s, &r, 1003), VX_SIM_ERR_GTX); /* post-only that would take */
    r = order(btc, VX_SIM_BUY, VX_SIM_LIMIT, VX_SIM_GTC, U(60000.05), U(0.001), 0);
    assert_int_equal(vx_sim_place(s, &r, 1004), VX_SIM_ERR_PRICE);
    r = order(btc, VX_SIM_BUY, VX_SIM_LIMIT, VX_SIM_GTC, U(59000), U(0.0015), 0);
    assert_int_equal(vx_sim_place(s, &r, 1005), VX_SIM_ERR_QTY);
    r = order(btc, VX_SIM_BUY, VX_SIM_LIMIT, VX_SIM_GTC, U(1000), U(0.001), 0);
    assert_int_equal(vx_sim_place(s, &r, 1006), VX_SIM_ERR_NOTIONAL); /* 1 USDT < 5 */
    r = order(btc, VX_SIM_BUY, VX_SIM_LIMIT, VX_SIM_IOC, U(59000), U(0.001), 0);
    int64_t id = vx_sim_place(s, &r, 1007);
    assert_true(id > 0);
    assert_int_equal(last_of(s, VX_SIM_EV_ORDER)->status, VX_SIM_EXPIRED); /* IOC with nothing to take */
    assert_int_equal(last_of(s, VX_SIM_EV_ORDER)->order_id, id);
    assert_int_equal(vx_sim_cancel(s, 999, 1008), VX_SIM_ERR_UNKNOWN_ORDER);
    assert_int_equal(vx_sim_wallet(s), U(100));
    vx_sim_free(s);
}

static void test_funding_both_ways(void **state) {
    (void)state;
    int btc;
    vx_sim *s = make(U(10000), 0, &btc);
    vx_sim_tick(s, btc, U(60000), 1000);
    vx_sim_order_req r = order(btc, VX_SIM_BUY, VX_SIM_MARKET, VX_SIM_GTC, 0, U(0.010), 0);
    assert_true(vx_sim_place(s, &r, 1001) > 0);
    vx_sim_tick(s, btc, U(60000), 2000);
    int64_t w = vx_sim_wallet(s); /* after the 0.24 taker fee */
    assert_int_equal(w, U(10000) - U(0.24));
    /* a long pays 600 × 0.0001 = 0.06 at a positive rate, receives it at a negative one */
    vx_sim_funding(s, btc, U(0.0001), U(60000), 28800000);
    assert_int_equal(vx_sim_wallet(s), w - U(0.06));
    vx_sim_funding(s, btc, -U(0.0001), U(60000), 57600000);
    assert_int_equal(vx_sim_wallet(s), w);
    assert_int_equal(last_of(s, VX_SIM_EV_FUNDING)->realized_pnl, U(0.06));
    vx_sim_free(s);
}

/* 0.030 BTC long at 60000 on 20x with 100 USDT: maintenance 0.4%, fee 1.5% */
static void test_liquidation_at_maintenance(void **state) {
    (void)state;
    int btc;
    vx_sim *s = make(U(100), 0, &btc);
    assert_int_equal(vx_sim_set_leverage(s, btc, 20), 0);
    vx_sim_tick(s, btc, U(60000), 1000);
    vx_sim_order_req r = order(btc, VX_SIM_BUY, VX_SIM_MARKET, VX_SIM_GTC, 0, U(0.030), 0);
    assert_true(vx_sim_place(s, &r, 1001) > 0);
    vx_sim_tick(s, btc, U(60000), 2000);
    assert_int_equal(vx_sim_wallet(s), U(100) - U(0.72));
    /* at 57000: equity 99.28 − 90 = 9.28 above maintenance 6.84 */
    vx_sim_tick(s, btc, U(57000), 3000);
    assert_int_equal(vx_sim_position_of(s, btc).qty, U(0.030));
    assert_int_equal(vx_sim_equity(s), U(9.28));
    /* at 56900: equity 6.28 below maintenance 6.828: closed; the 25.605 fee is capped at what is left */
    vx_sim_tick(s, btc, U(56900), 4000);
    assert_int_equal(vx_sim_position_of(s, btc).qty, 0);
    const vx_sim_event *liq = last_of(s, VX_SIM_EV_LIQUIDATION);
    assert_non_null(liq);
    assert_int_equal(liq->realized_pnl, -U(93));
    assert_int_equal(liq->fee, U(6.28));
    assert_int_equal(vx_sim_wallet(s), 0);
    vx_sim_free(s);
}

/* a candle is walked open → the extreme adverse to the position → the other → close */
static void test_candle_path_is_adverse_first(void **state) {
    (void)state;
    int btc;
    vx_sim *s = make(U(100000), 0, &btc);
    vx_sim_tick(s, btc, U(100), 0);
    vx_sim_order_req buy = order(btc, VX_SIM_BUY, VX_SIM_LIMIT, VX_SIM_GTC, U(96), U(1), 0);
    vx_sim_order_req sell = order(btc, VX_SIM_SELL, VX_SIM_LIMIT, VX_SIM_GTC, U(109), U(1), 0);
    assert_true(vx_sim_place(s, &buy, 1) > 0);
    assert_true(vx_sim_place(s, &sell, 2) > 0);
    vx_sim_clear_events(s);
    /* flat: the farther extreme first (high: +10 against low: −5), so the sell fills first */
    vx_sim_candle(s, btc, 60000, U(100), U(110), U(95), U(105), 60000);
    size_t n;
    const vx_sim_event *ev = vx_sim_events(s, &n);
    int seen = 0;
    for (size_t i = 0; i < n; i++) {
        if (ev[i].kind != VX_SIM_EV_FILL) continue;
        assert_int_equal(ev[i].side, seen == 0 ? VX_SIM_SELL : VX_SIM_BUY);
        assert_int_equal(ev[i].time_ms, seen == 0 ? 60000 + 15000 : 60000 + 30000);
        seen++;
    }
    assert_int_equal(seen, 2);
    /* short 1 at 109, covered at 96: +13, minus maker fees 0.0218 + 0.0192 */
    assert_int_equal(vx_sim_position_of(s, btc).qty, 0);
    assert_int_equal(vx_sim_wallet(s), U(100000) + U(13) - U(0.0218) - U(0.0192));
    vx_sim_free(s);
}

static void test_reduce_only_is_clamped_to_the_position(void **state) {
    (void)state;
    int btc;
    vx_sim *s = make(U(10000), 0, &btc);
    vx_sim_tick(s, btc, U(60000), 0);
    vx_sim_order_req b = order(btc, VX_SIM_BUY, VX_SIM_MARKET, VX_SIM_GTC, 0, U(0.010), 0);
    assert_true(vx_sim_place(s, &b, 1) > 0);
    vx_sim_tick(s, btc, U(60000), 1000);
    vx_sim_order_req r = order(btc, VX_SIM_SELL, VX_SIM_MARKET, VX_SIM_GTC, 0, U(0.025), 1);
    assert_true(vx_sim_place(s, &r, 1001) > 0);
    vx_sim_tick(s, btc, U(60000), 2000);
    assert_int_equal(vx_sim_position_of(s, btc).qty, 0); /* closed, never flipped short */
    const vx_sim_event *o = last_of(s, VX_SIM_EV_ORDER);
    assert_int_equal(o->status, VX_SIM_EXPIRED);
    assert_int_equal(o->filled, U(0.010));
    vx_sim_free(s);
}

static vx_sim *long_position(int *btc, int64_t qty, int64_t price) {
    vx_sim *s = make(U(10000), 0, btc);
    vx_sim_tick(s, *btc, price, 0);
    vx_sim_order_req b = order(*btc, VX_SIM_BUY, VX_SIM_MARKET, VX_SIM_GTC, 0, qty, 0);
    assert_true(vx_sim_place(s, &b, 1) > 0);
    vx_sim_tick(s, *btc, price, 1000);
    assert_int_equal(vx_sim_position_of(s, *btc).qty, qty);
    vx_sim_clear_events(s);
    return s;
}

/* a stop-loss that the price gaps through fills at the gap, not at the stop */
static void test_stop_market_fills_at_the_gap(void **state) {
    (void)state;
    int btc;
    vx_sim *s = long_position(&btc, U(0.010), U(60000));
    vx_sim_order_req sl = order(btc, VX_SIM_SELL, VX_SIM_STOP_MARKET, VX_SIM_GTC, 0, 0, 0);
    sl.stop_price = U(59000);
    sl.close_position = 1;
    assert_true(vx_sim_place(s, &sl, 2000) > 0);
    vx_sim_tick(s, btc, U(59500), 3000);
    assert_int_equal(vx_sim_position_of(s, btc).qty, U(0.010));
    int64_t w = vx_sim_wallet(s);
    vx_sim_tick(s, btc, U(58800), 4000);
    const vx_sim_event *f = last_of(s, VX_SIM_EV_FILL);
    assert_non_null(f);
    assert_int_equal(f->price, U(58800));
    assert_int_equal(f->realized_pnl, -U(12));
    assert_int_equal(f->fee, U(0.2352));
    assert_int_equal(vx_sim_wallet(s), w - U(12) - U(0.2352));
    assert_int_equal(vx_sim_position_of(s, btc).qty, 0);
    vx_sim_free(s);
}

/* a stop that opens a position is margin-checked when it fires: the first
 * finds 61 + 0.0244 fee within 100; the second needs 124 with about 39 free
 * (100 - 61 margin - fee + 1 of profit) and expires */
static void test_stop_entry_margin_checked_at_trigger(void **state) {
    (void)state;
    int btc;
    vx_sim *s = make(U(100), 0, &btc);
    assert_int_equal(vx_sim_set_leverage(s, btc, 1), 0);
    vx_sim_tick(s, btc, U(60000), 1000);
    vx_sim_order_req a = order(btc, VX_SIM_BUY, VX_SIM_STOP_MARKET, VX_SIM_GTC, 0, U(0.001), 0);
    a.stop_price = U(61000);
    vx_sim_order_req b = order(btc, VX_SIM_BUY, VX_SIM_STOP_MARKET, VX_SIM_GTC, 0, U(0.002), 0);
    b.stop_price = U(62000);
    assert_true(vx_sim_place(s, &a, 1000) > 0);
    int64_t idb = vx_sim_place(s, &b, 1000);
    assert_true(idb > 0); /* resting untriggered: no margin asked yet */
    vx_sim_tick(s, btc, U(61000), 2000);
    vx_sim_tick(s, btc, U(61000), 3000);
    assert_int_equal(vx_sim_position_of(s, btc).qty, U(0.001));
    vx_sim_clear_events(s);
    vx_sim_tick(s, btc, U(62000), 4000);
    vx_sim_tick(s, btc, U(62000), 5000);
    const vx_sim_event *e = last_of(s, VX_SIM_EV_ORDER);
    assert_non_null(e);
    assert_int_equal(e->order_id, idb);
    assert_int_equal(e->status, VX_SIM_EXPIRED);
    assert_int_equal(vx_sim_position_of(s, btc).qty, U(0.001));
    vx_sim_free(s);
}

static void test_take_profit_and_stop_limit(void **state) {
    (void)state;
    int btc;
    vx_sim *s = long_position(&btc, U(0.010), U(60000));
    vx_sim_order_req tp = order(btc, VX_SIM_SELL, VX_SIM_TAKE_PROFIT_MARKET, VX_SIM_GTC, 0, U(0.004), 1);
    tp.stop_price = U(61000);
    assert_true(vx_sim_place(s, &tp, 2000) > 0);
    vx_sim_tick(s, btc, U(60999.9), 3000);
    assert_int_equal(vx_sim_position_of(s, btc).qty, U(0.010));
    vx_sim_tick(s, btc, U(61000), 4000);
    assert_int_equal(last_of(s, VX_SIM_EV_FILL)->price, U(61000));
    assert_int_equal(vx_sim_position_of(s, btc).qty, U(0.006));
    /* a buy stop-limit: fires at 60500 or above, then buys no higher than 60600 */
    vx_sim_order_req st = order(btc, VX_SIM_BUY, VX_SIM_STOP, VX_SIM_GTC, U(60600), U(0.002), 0);
    st.stop_price = U(60500);
    assert_true(vx_sim_place(s, &st, 5000) > 0);
    vx_sim_tick(s, btc, U(60400), 6000);
    assert_int_equal(vx_sim_open_orders(s), 1);
    vx_sim_tick(s, btc, U(60550), 7000);
    const vx_sim_event *f = last_of(s, VX_SIM_EV_FILL);
    assert_int_equal(f->price, U(60550));
    assert_int_equal(f->maker, 0);
    assert_int_equal(vx_sim_position_of(s, btc).qty, U(0.008));
    vx_sim_free(s);
}

/* 1% trailing sell: arms at 60000, trails the high of 61000, fires at 60390 */
static void test_trailing_stop(void **state) {
    (void)state;
    int btc;
    vx_sim *s = long_position(&btc, U(0.010), U(60000));
    vx_sim_order_req tr = order(btc, VX_SIM_SELL, VX_SIM_TRAILING_STOP_MARKET, VX_SIM_GTC, 0, U(0.010), 1);
    tr.callback_ppm = 10000;
    assert_true(vx_sim_place(s, &tr, 2000) > 0);
    vx_sim_tick(s, btc, U(60000), 3000);
    vx_sim_tick(s, btc, U(61000), 4000);
    vx_sim_tick(s, btc, U(60500), 5000);
    assert_int_equal(vx_sim_position_of(s, btc).qty, U(0.010));
    vx_sim_tick(s, btc, U(60390), 6000);
    assert_int_equal(last_of(s, VX_SIM_EV_FILL)->price, U(60390));
    assert_int_equal(vx_sim_position_of(s, btc).qty, 0);
    vx_sim_free(s);
}

static void test_close_position_when_flat_expires(void **state) {
    (void)state;
    int btc;
    vx_sim *s = make(U(10000), 0, &btc);
    vx_sim_tick(s, btc, U(60000), 0);
    vx_sim_order_req sl = order(btc, VX_SIM_SELL, VX_SIM_STOP_MARKET, VX_SIM_GTC, 0, 0, 0);
    sl.stop_price = U(59000);
    sl.close_position = 1;
    assert_true(vx_sim_place(s, &sl, 1) > 0);
    vx_sim_tick(s, btc, U(58000), 1000);
    assert_int_equal(last_of(s, VX_SIM_EV_ORDER)->status, VX_SIM_EXPIRED);
    assert_null(last_of(s, VX_SIM_EV_FILL));
    assert_int_equal(vx_sim_position_of(s, btc).qty, 0);
    vx_sim_order_req bad = order(btc, VX_SIM_SELL, VX_SIM_MARKET, VX_SIM_GTC, 0, 0, 0);
    bad.close_position = 1;
    assert_int_equal(vx_sim_place(s, &bad, 2000), VX_SIM_ERR_PARAM); /* only conditional orders close positions */
    vx_sim_free(s);
}

/* an order takes part only after its latency; a limit fills only after its queue delay */
static void test_latency_and_queue_delay(void **state) {
    (void)state;
    vx_sim *s = vx_sim_new(U(10000));
    vx_sim_symbol_cfg c = {.name = "BTCUSDT", .tick = U(0.1), .step = U(0.001), .min_qty = U(0.001),
                           .max_qty = U(100), .min_notional = U(5), .maker_fee_ppm = 200, .taker_fee_ppm = 400,
                           .maint_margin_ppm = 4000, .liq_fee_ppm = 15000, .max_leverage = 125,
                           .latency_ms = 50, .queue_ms = 1000};
    int btc = vx_sim_add_symbol(s, &c);
    vx_sim_tick(s, btc, U(60000), 1000);
    vx_sim_order_req m = order(btc, VX_SIM_BUY, VX_SIM_MARKET, VX_SIM_GTC, 0, U(0.010), 0);
    assert_true(vx_sim_place(s, &m, 1000) > 0);
    vx_sim_tick(s, btc, U(59000), 1020); /* 20 ms later: not there yet */
    assert_int_equal(vx_sim_position_of(s, btc).qty, 0);
    vx_sim_tick(s, btc, U(60500), 1060);
    assert_int_equal(last_of(s, VX_SIM_EV_FILL)->price, U(60500));
    vx_sim_order_req l = order(btc, VX_SIM_SELL, VX_SIM_LIMIT, VX_SIM_GTC, U(61000), U(0.010), 0);
    assert_true(vx_sim_place(s, &l, 2000) > 0);
    vx_sim_tick(s, btc, U(61001), 3000);      /* through, the queue starts */
    vx_sim_tick(s, btc, U(60999), 3500);      /* back: it starts over */
    vx_sim_tick(s, btc, U(61002), 4000);
    vx_sim_tick(s, btc, U(61003), 4900);
    assert_int_equal(vx_sim_position_of(s, btc).qty, U(0.010));
    vx_sim_tick(s, btc, U(61004), 5000);      /* a full second through */
    assert_int_equal(vx_sim_position_of(s, btc).qty, 0);
    assert_int_equal(last_of(s, VX_SIM_EV_FILL)->price, U(61000));
    vx_sim_free(s);
}

static vx_sim_order_req sided(int sym, int side, int ps, int64_t qty) {
    vx_sim_order_req r = order(sym, side, VX_SIM_MARKET, VX_SIM_GTC, 0, qty, 0);
    r.position_side = ps;
    return r;
}

/* hedge mode: a long and a short side by side; closing orders never flip a side */
static void test_hedge_mode(void **state) {
    (void)state;
    int btc;
    vx_sim *s = make(U(10000), 0, &btc);
    assert_int_equal(vx_sim_set_hedge(s, 1), 0);
    vx_sim_tick(s, btc, U(60000), 0);
    vx_sim_order_req r = sided(btc, VX_SIM_BUY, VX_SIM_LONG, U(0.010));
    assert_true(vx_sim_place(s, &r, 1) > 0);
    r = sided(btc, VX_SIM_SELL, VX_SIM_SHORT, U(0.010));
    assert_true(vx_sim_place(s, &r, 2) > 0);
    vx_sim_tick(s, btc, U(60000), 1000);
    assert_int_equal(vx_sim_position_side(s, btc, VX_SIM_LONG).qty, U(0.010));
    assert_int_equal(vx_sim_position_side(s, btc, VX_SIM_SHORT).qty, -U(0.010));
    assert_int_equal(vx_sim_wallet(s), U(10000) - U(0.48));
    assert_int_equal(vx_sim_set_hedge(s, 0), VX_SIM_ERR_MODE_OPEN);
    r = sided(btc, VX_SIM_SELL, VX_SIM_BOTH, U(0.010));
    assert_int_equal(vx_sim_place(s, &r, 3), VX_SIM_ERR_POSITION_SIDE);
    r.position_side = -1; /* garbage from a caller: refused, and reported without a side */
    assert_int_equal(vx_sim_place(s, &r, 3), VX_SIM_ERR_POSITION_SIDE);
    assert_int_equal(last_of(s, VX_SIM_EV_ORDER)->status, VX_SIM_REJECTED);
    r = sided(btc, VX_SIM_SELL, VX_SIM_LONG, U(0.010));
    r.reduce_only = 1;
    assert_int_equal(vx_sim_place(s, &r, 4), VX_SIM_ERR_REDUCE_IN_HEDGE);
    vx_sim_tick(s, btc, U(61000), 2000);
    r = sided(btc, VX_SIM_SELL, VX_SIM_LONG, U(0.020)); /* more than the long holds */
    assert_true(vx_sim_place(s, &r, 2001) > 0);
    vx_sim_tick(s, btc, U(61000), 3000);
    assert_int_equal(vx_sim_position_side(s, btc, VX_SIM_LONG).qty, 0); /* closed, not flipped */
    assert_int_equal(last_of(s, VX_SIM_EV_FILL)->realized_pnl, U(10));
    assert_int_equal(last_of(s, VX_SIM_EV_ORDER)->status, VX_SIM_EXPIRED);
    r = sided(btc, VX_SIM_BUY, VX_SIM_SHORT, U(0.010));
    assert_true(vx_sim_place(s, &r, 3001) > 0);
    vx_sim_tick(s, btc, U(61000), 4000);
    assert_int_equal(vx_sim_position_side(s, btc, VX_SIM_SHORT).qty, 0);
    /* 10000 − 0.48 + 10 − 0.244 − 10 − 0.244 */
    assert_int_equal(vx_sim_wallet(s), U(9999.032));
    assert_int_equal(vx_sim_set_hedge(s, 0), 0);
    vx_sim_free(s);
}

/* isolated: 0.1 BTC at 60000 on 10x holds 600 of margin; liquidated alone at
 * 54200, losing no more than that margin */
static void test_isolated_margin(void **state) {
    (void)state;
    int btc;
    vx_sim *s = make(U(1000), 0, &btc);
    assert_int_equal(vx_sim_set_isolated(s, btc, 1), 0);
    assert_int_equal(vx_sim_set_leverage(s, btc, 10), 0);
    vx_sim_tick(s, btc, U(60000), 0);
    vx_sim_order_req r = order(btc, VX_SIM_BUY, VX_SIM_MARKET, VX_SIM_GTC, 0, U(0.1), 0);
    assert_true(vx_sim_place(s, &r, 1) > 0);
    vx_sim_tick(s, btc, U(60000), 1000);
    vx_sim_position p = vx_sim_position_of(s, btc);
    assert_int_equal(p.isolated_margin, U(600));
    assert_int_equal(vx_sim_wallet(s), U(1000) - U(2.4));
    assert_int_equal(vx_sim_available(s), U(397.6));
    assert_int_equal(vx_sim_set_isolated(s, btc, 0), VX_SIM_ERR_MARGIN_TYPE_OPEN);
    vx_sim_tick(s, btc, U(54300), 2000); /* 600 − 570 = 30 above maintenance 21.72 */
    assert_int_equal(vx_sim_position_of(s, btc).qty, U(0.1));
    vx_sim_tick(s, btc, U(54200), 3000); /* 600 − 580 = 20 at or below 21.68 */
    assert_int_equal(vx_sim_position_of(s, btc).qty, 0);
    const vx_sim_event *liq = last_of(s, VX_SIM_EV_LIQUIDATION);
    assert_non_null(liq);
    assert_int_equal(liq->realized_pnl, -U(580));
    assert_int_equal(liq->fee, U(20)); /* 81.3 due, capped at the 20 of margin left */
    assert_int_equal(vx_sim_wallet(s), U(397.6)); /* the cross part never paid */
    vx_sim_free(s);
}

/* a market order's slippage grows with its share of the candle's volume */
static void test_volume_impact_slippage(void **state) {
    (void)state;
    vx_sim *s = vx_sim_new(U(1000000));
    vx_sim_symbol_cfg c = {.name = "BTCUSDT", .tick = U(0.1), .step = U(0.001), .min_qty = U(0.001),
                           .max_qty = U(100), .min_notional = U(5), .maker_fee_ppm = 200, .taker_fee_ppm = 400,
                           .maint_margin_ppm = 4000, .liq_fee_ppm = 15000, .max_leverage = 125, .impact_bps = 100};
    int btc = vx_sim_add_symbol(s, &c);
    vx_sim_tick(s, btc, U(60000), 0);
    vx_sim_order_req r = order(btc, VX_SIM_BUY, VX_SIM_MARKET, VX_SIM_GTC, 0, U(1), 0);
    assert_true(vx_sim_place(s, &r, 1) > 0);
    /* 1 BTC of a 10 BTC candle: 100 bps × 1/10 = 10 bps over the open of 60000 */
    vx_sim_candle_v(s, btc, 60000, U(60000), U(60100), U(59900), U(60050), U(10), 60000);
    assert_int_equal(last_of(s, VX_SIM_EV_FILL)->price, U(60060));
    vx_sim_free(s);
}

/* with a mark price: PnL and liquidation follow the mark, MARK_PRICE stops trigger on it
 * and fill at the last trade */
static void test_mark_price(void **state) {
    (void)state;
    int btc;
    vx_sim *s = long_position(&btc, U(0.010), U(60000));
    vx_sim_mark(s, btc, U(59000), 2000);
    assert_int_equal(vx_sim_unrealized(s, btc, VX_SIM_BOTH), -U(10)); /* (59000 − 60000) × 0.010 at the mark */
    vx_sim_order_req sl = order(btc, VX_SIM_SELL, VX_SIM_STOP_MARKET, VX_SIM_GTC, 0, 0, 0);
    sl.stop_price = U(58500);
    sl.close_position = 1;
    sl.working_mark = 1;
    assert_true(vx_sim_place(s, &sl, 2001) > 0);
    vx_sim_tick(s, btc, U(58000), 3000);                      /* a trade below the stop: not the mark */
    assert_int_equal(vx_sim_position_of(s, btc).qty, U(0.010));
    vx_sim_mark(s, btc, U(58400), 4000);                      /* the mark crosses: out at the last trade */
    assert_int_equal(vx_sim_position_of(s, btc).qty, 0);
    assert_int_equal(last_of(s, VX_SIM_EV_FILL)->price, U(58000));
    vx_sim_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_market_then_limit_round_trip),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_funding_both_ways),
        cmocka_unit_test(test_liquidation_at_maintenance),
        cmocka_unit_test(test_candle_path_is_adverse_first),
        cmocka_unit_test(test_reduce_only_is_clamped_to_the_position),
        cmocka_unit_test(test_stop_market_fills_at_the_gap),
        cmocka_unit_test(test_take_profit_and_stop_limit),
        cmocka_unit_test(test_trailing_stop),
        cmocka_unit_test(test_close_position_when_flat_expires),
        cmocka_unit_test(test_latency_and_queue_delay),
        cmocka_unit_test(test_hedge_mode),
        cmocka_unit_test(test_isolated_margin),
        cmocka_unit_test(test_volume_impact_slippage),
        cmocka_unit_test(test_mark_price),
        cmocka_unit_test(test_stop_entry_margin_checked_at_trigger),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
