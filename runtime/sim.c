/*
 * sim.c — the simulated venue's matching and accounting (see sim.h).
 */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef __int128 i128;

typedef struct sim_order {
    int64_t id;
    vx_sim_order_req req;
    int64_t filled;
    int64_t avg_price;
    int32_t status;
    int32_t crossed;       /* a LIMIT that crossed on arrival: executes as taker at the next tick */
    int32_t armed;         /* trailing stop: activated, tracking `extreme` */
    int64_t active_at;     /* order latency: ignored by ticks before this time */
    int64_t through_since; /* queue delay: when the price first traded through a resting limit */
    int64_t extreme;       /* trailing stop: best price since activation */
} sim_order;

static int is_conditional(int type) { return type >= VX_SIM_STOP_MARKET; }

typedef struct sim_pos {
    int64_t qty;           /* signed; LONG >= 0, SHORT <= 0 in hedge mode */
    int64_t entry_price;
    int64_t iso_margin;    /* isolated margin held by this position */
} sim_pos;

typedef struct sim_symbol {
    vx_sim_symbol_cfg cfg;
    sim_pos p[3];          /* BOTH (one-way), LONG, SHORT (hedge) */
    int64_t last_price;    /* the last traded price */
    int64_t mark_price;    /* 0 until a mark arrives: then PnL, margin and liquidation use it */
    int64_t volume;        /* the current candle's volume, 0 when unknown */
    int32_t leverage;
    int32_t isolated;
    int has_price;
} sim_symbol;

struct vx_sim {
    int64_t wallet;        /* cross wallet plus every isolated margin */
    int hedge;
    int64_t next_order_id;
    int64_t next_trade_id;
    int64_t now_ms;
    sim_symbol sym[VX_SIM_MAX_SYMBOLS];
    int nsym;
    sim_order *orders;     /* open orders, by id */
    size_t norders, cap_orders;
    vx_sim_event *ev;
    size_t nev, cap_ev;
};

/* ---- arithmetic: everything in 1e-8 units, rounded on purpose ---------------- */

static int64_t div_floor(i128 a, i128 b) {
    i128 q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
    return (int64_t)q;
}

static int64_t div_ceil(i128 a, i128 b) { return -div_floor(-a, b); }

/* price × quantity, floored */
static int64_t notional(int64_t price, int64_t qty) { return div_floor((i128)price * qty, VX_SIM_SCALE); }

/* a fee or a charge: rounded up, against the trader */
static int64_t charge(int64_t notional_abs, int32_t ppm) { return div_ceil((i128)notional_abs * ppm, 1000000); }

static int64_t abs64(int64_t v) { return v < 0 ? -v : v; }

static int on_grid(int64_t v, int64_t grid) { return grid <= 0 || v % grid == 0; }

/* ---- events --------------------------------------------------------------------- */

static vx_sim_event *push_event(vx_sim *s, int kind, int symbol) {
    if (s->nev == s->cap_ev) {
        size_t cap = s->cap_ev ? 2 * s->cap_ev : 64;
        vx_sim_event *p = realloc(s->ev, cap * sizeof *p);
        if (!p) return NULL;
        s->ev = p;
        s->cap_ev = cap;
    }
    vx_sim_event *e = &s->ev[s->nev++];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->symbol = symbol;
    e->time_ms = s->now_ms;
    e->wallet = s->wallet;
    if (symbol >= 0 && symbol < s->nsym) {
        e->position = s->sym[symbol].p[0].qty;
        e->entry_price = s->sym[symbol].p[0].entry_price;
    }
    return e;
}

static void event_side(vx_sim *s, vx_sim_event *e, int symbol, int ps) {
    /* a refused order may carry any position side: report none */
    if (!e || symbol < 0 || symbol >= s->nsym || ps < 0 || ps > 2) return;
    const sim_pos *p = &s->sym[symbol].p[ps];
    e->position_side = ps;
    e->position = p->qty;
    e->entry_price = p->entry_price;
    e->isolated_margin = p->iso_margin;
}

static void order_event(vx_sim *s, const sim_order *o, int reason) {
    vx_sim_event *e = push_event(s, VX_SIM_EV_ORDER, o->req.symbol);
    if (!e) return;
    e->order_id = o->id;
    memcpy(e->client_id, o->req.client_id, sizeof e->client_id);
    e->side = o->req.side;
    e->type = o->req.type;
    e->status = o->status;
    e->price = o->req.price;
    e->qty = o->req.qty;
    e->filled = o->filled;
    e->avg_price = o->avg_price;
    e->reason = reason;
    event_side(s, e, o->req.symbol, o->req.position_side);
}

/* ---- engine ------------------------------------------------------------------------ */

vx_sim *vx_sim_new(int64_t wallet) {
    vx_sim *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->wallet = wallet;
    s->next_order_id = 1;
    s->next_trade_id = 1;
    return s;
}

void vx_sim_free(vx_sim *s) {
    if (!s) return;
    free(s->orders);
    free(s->ev);
    free(s);
}

int vx_sim_add_symbol(vx_sim *s, const vx_sim_symbol_cfg *cfg) {
    if (s->nsym == VX_SIM_MAX_SYMBOLS || cfg->tick <= 0 || cfg->step <= 0 || cfg->max_leverage <= 0) return -1;
    sim_symbol *y = &s->sym[s->nsym];
    memset(y, 0, sizeof *y);
    y->cfg = *cfg;
    y->cfg.name[sizeof y->cfg.name - 1] = '\0';
    y->leverage = cfg->max_leverage < 20 ? cfg->max_leverage : 20;
    return s->nsym++;
}

int vx_sim_set_leverage(vx_sim *s, int symbol, int leverage) {
    if (symbol < 0 || symbol >= s->nsym) return VX_SIM_ERR_SYMBOL;
    if (leverage < 1 || leverage > s->sym[symbol].cfg.max_leverage) return VX_SIM_ERR_LEVERAGE;
    s->sym[symbol].leverage = leverage;
    return 0;
}

static int symbol_busy(const vx_sim *s, int symbol) {
    const sim_symbol *y = &s->sym[symbol];
    if (y->p[0].qty || y->p[1].qty || y->p[2].qty) return 1;
    for (size_t i = 0; i < s->norders; i++)
        if (s->orders[i].req.symbol == symbol) return 1;
    return 0;
}

int vx_sim_set_isolated(vx_sim *s, int symbol, int isolated) {
    if (symbol < 0 || symbol >= s->nsym) return VX_SIM_ERR_SYMBOL;
    if (symbol_busy(s, symbol)) return VX_SIM_ERR_MARGIN_TYPE_OPEN;
    s->sym[symbol].isolated = isolated ? 1 : 0;
    return 0;
}

int vx_sim_set_hedge(vx_sim *s, int hedge) {
    for (int i = 0; i < s->nsym; i++)
        if (symbol_busy(s, i)) return VX_SIM_ERR_MODE_OPEN; /* a position or an order anywhere */
    s->hedge = hedge ? 1 : 0;
    return 0;
}

/* The price positions are valued at: the mark, or the last trade before any mark. */
static int64_t value_price(const sim_symbol *y) { return y->mark_price ? y->mark_price : y->last_price; }

static int64_t unrealized(const sim_symbol *y, int ps) {
    const sim_pos *p = &y->p[ps];
    if (!p->qty || !y->has_price) return 0;
    return div_floor((i128)(value_price(y) - p->entry_price) * p->qty, VX_SIM_SCALE);
}

static int64_t total_iso_margin(const vx_sim *s) {
    int64_t m = 0;
    for (int i = 0; i < s->nsym; i++)
        for (int ps = 0; ps < 3; ps++) m += s->sym[i].p[ps].iso_margin;
    return m;
}

/* The cross part of the account: wallet less isolated margins, plus the
 * unrealized PnL of cross positions. */
static int64_t cross_equity(const vx_sim *s) {
    int64_t eq = s->wallet - total_iso_margin(s);
    for (int i = 0; i < s->nsym; i++)
        if (!s->sym[i].isolated)
            for (int ps = 0; ps < 3; ps++) eq += unrealized(&s->sym[i], ps);
    return eq;
}

int64_t vx_sim_wallet(const vx_sim *s) { return s->wallet; }

int64_t vx_sim_equity(const vx_sim *s) {
    int64_t eq = s->wallet;
    for (int i = 0; i < s->nsym; i++)
        for (int ps = 0; ps < 3; ps++) eq += unrealized(&s->sym[i], ps);
    return eq;
}

/* Initial margin an order ties up: its notional over the leverage (reduce-only: none). */
static int64_t order_margin(const vx_sim *s, const sim_order *o) {
    if (o->req.reduce_only || is_conditional(o->req.type)) return 0;
    const sim_symbol *y = &s->sym[o->req.symbol];
    if (s->hedge && (o->req.position_side == VX_SIM_LONG) != (o->req.side == VX_SIM_BUY)) return 0; /* closes */
    int64_t px = o->req.type == VX_SIM_LIMIT ? o->req.price : y->last_price;
    return div_ceil((i128)notional(px, o->req.qty - o->filled), y->leverage);
}

int64_t vx_sim_available(const vx_sim *s) {
    int64_t avail = cross_equity(s);
    for (int i = 0; i < s->nsym; i++) {
        const sim_symbol *y = &s->sym[i];
        if (y->isolated) continue; /* its margin is already set aside */
        for (int ps = 0; ps < 3; ps++)
            if (y->p[ps].qty) avail -= div_ceil((i128)notional(value_price(y), abs64(y->p[ps].qty)), y->leverage);
    }
    for (size_t i = 0; i < s->norders; i++) avail -= order_margin(s, &s->orders[i]);
    return avail;
}

vx_sim_position vx_sim_position_side(const vx_sim *s, int symbol, int side) {
    vx_sim_position p = {0};
    if (symbol < 0 || symbol >= s->nsym || side < 0 || side > 2) return p;
    const sim_symbol *y = &s->sym[symbol];
    p.qty = y->p[side].qty;
    p.entry_price = y->p[side].entry_price;
    p.last_price = value_price(y);
    p.leverage = y->leverage;
    p.isolated = y->isolated;
    p.isolated_margin = y->p[side].iso_margin;
    return p;
}

vx_sim_position vx_sim_position_of(const vx_sim *s, int symbol) { return vx_sim_position_side(s, symbol, VX_SIM_BOTH); }

size_t vx_sim_open_orders(const vx_sim *s) { return s->norders; }

int64_t vx_sim_unrealized(const vx_sim *s, int symbol, int side) {
    if (symbol < 0 || symbol >= s->nsym || side < 0 || side > 2) return 0;
    return unrealized(&s->sym[symbol], side);
}

const vx_sim_event *vx_sim_events(vx_sim *s, size_t *n) {
    *n = s->nev;
    return s->ev;
}

void vx_sim_clear_events(vx_sim *s) { s->nev = 0; }

/* ---- placing ------------------------------------------------------------------------ */

static int64_t refuse(vx_sim *s, const vx_sim_order_req *req, int code) {
    sim_order o = {.id = s->next_order_id++, .req = *req, .status = VX_SIM_REJECTED};
    order_event(s, &o, code);
    return code;
}

static int validate(const vx_sim *s, const vx_sim_order_req *r) {
    if (r->symbol < 0 || r->symbol >= s->nsym) return VX_SIM_ERR_SYMBOL;
    const vx_sim_symbol_cfg *c = &s->sym[r->symbol].cfg;
    if ((r->side != VX_SIM_BUY && r->side != VX_SIM_SELL) || r->type < VX_SIM_MARKET || r->type > VX_SIM_TRAILING_STOP_MARKET)
        return VX_SIM_ERR_PARAM;
    if (r->close_position && (!is_conditional(r->type) || r->type == VX_SIM_TRAILING_STOP_MARKET)) return VX_SIM_ERR_PARAM;
    if (!r->close_position &&
        (r->qty <= 0 || !on_grid(r->qty, c->step) || r->qty < c->min_qty || (c->max_qty && r->qty > c->max_qty)))
        return VX_SIM_ERR_QTY;
    int limit_priced = r->type == VX_SIM_LIMIT || r->type == VX_SIM_STOP || r->type == VX_SIM_TAKE_PROFIT;
    if (limit_priced && (r->price <= 0 || !on_grid(r->price, c->tick))) return VX_SIM_ERR_PRICE;
    if (is_conditional(r->type) && r->type != VX_SIM_TRAILING_STOP_MARKET && (r->stop_price <= 0 || !on_grid(r->stop_price, c->tick)))
        return VX_SIM_ERR_PRICE;
    if (r->type == VX_SIM_TRAILING_STOP_MARKET && (r->callback_ppm < 1000 || r->callback_ppm > 50000)) /* 0.1%..5% */
        return VX_SIM_ERR_PARAM;
    if (s->hedge ? (r->position_side != VX_SIM_LONG && r->position_side != VX_SIM_SHORT) : r->position_side != VX_SIM_BOTH)
        return VX_SIM_ERR_POSITION_SIDE;
    if (s->hedge && r->reduce_only) return VX_SIM_ERR_REDUCE_IN_HEDGE;
    return 0;
}

/* Does this order (side, position side) close rather than open? In hedge
 * mode that is fixed by the pair; in one-way mode it depends on the position. */
static int closes(const vx_sim *s, const vx_sim_order_req *r) {
    const sim_pos *p = &s->sym[r->symbol].p[r->position_side];
    if (s->hedge) return (r->position_side == VX_SIM_LONG) != (r->side == VX_SIM_BUY);
    return p->qty != 0 && (p->qty > 0) != (r->side == VX_SIM_BUY);
}

static int add_order(vx_sim *s, const sim_order *o) {
    if (s->norders == s->cap_orders) {
        size_t cap = s->cap_orders ? 2 * s->cap_orders : 16;
        sim_order *p = realloc(s->orders, cap * sizeof *p);
        if (!p) return -1;
        s->orders = p;
        s->cap_orders = cap;
    }
    s->orders[s->norders++] = *o;
    return 0;
}

int64_t vx_sim_place(vx_sim *s, const vx_sim_order_req *req, int64_t now_ms) {
    if (now_ms > s->now_ms) s->now_ms = now_ms;
    int code = validate(s, req);
    if (code) return refuse(s, req, code);
    sim_symbol *y = &s->sym[req->symbol];
    if (is_conditional(req->type)) { /* rests untriggered; checked when it fires */
        sim_order o = {.id = s->next_order_id++, .req = *req, .status = VX_SIM_NEW,
                       .active_at = s->now_ms + y->cfg.latency_ms, .through_since = -1};
        if (req->close_position && !s->hedge) o.req.reduce_only = 1;
        if (add_order(s, &o) != 0) return refuse(s, req, VX_SIM_ERR_PARAM);
        order_event(s, &o, 0);
        return o.id;
    }
    int64_t ref_px = req->type == VX_SIM_LIMIT ? req->price : y->last_price;
    int closing = closes(s, req);
    if (req->reduce_only || (s->hedge && closing)) {
        /* it must face a position: a sell against a long, a buy against a short */
        if (!closing || y->p[req->position_side].qty == 0) return refuse(s, req, VX_SIM_ERR_REDUCE_ONLY);
    } else if (y->has_price && notional(ref_px, req->qty) < y->cfg.min_notional) {
        return refuse(s, req, VX_SIM_ERR_NOTIONAL);
    }
    int crosses = req->type == VX_SIM_LIMIT && y->has_price &&
                  (req->side == VX_SIM_BUY ? req->price >= y->last_price : req->price <= y->last_price);
    if (req->type == VX_SIM_LIMIT && req->tif == VX_SIM_GTX && crosses) return refuse(s, req, VX_SIM_ERR_GTX);
    sim_order o = {.id = s->next_order_id++, .req = *req, .status = VX_SIM_NEW, .crossed = crosses,
                   .active_at = s->now_ms + y->cfg.latency_ms, .through_since = -1};
    if (!req->reduce_only && !(s->hedge && closing)) {
        int64_t need = order_margin(s, &o) + charge(notional(ref_px, req->qty), y->cfg.taker_fee_ppm);
        if (y->has_price && need > vx_sim_available(s)) {
            s->next_order_id--;
            return refuse(s, req, VX_SIM_ERR_MARGIN);
        }
    }
    if (req->type == VX_SIM_LIMIT && !crosses && (req->tif == VX_SIM_IOC || req->tif == VX_SIM_FOK)) {
        o.status = VX_SIM_EXPIRED; /* nothing to take now, and it may not rest */
        order_event(s, &o, 0);
        return o.id;
    }
    if (add_order(s, &o) != 0) return refuse(s, req, VX_SIM_ERR_PARAM);
    order_event(s, &o, 0);
    return o.id;
}

static void remove_order(vx_sim *s, size_t i) {
    memmove(&s->orders[i], &s->orders[i + 1], (s->norders - i - 1) * sizeof *s->orders);
    s->norders--;
}

int vx_sim_cancel(vx_sim *s, int64_t order_id, int64_t now_ms) {
    if (now_ms > s->now_ms) s->now_ms = now_ms;
    for (size_t i = 0; i < s->norders; i++) {
        if (s->orders[i].id != order_id) continue;
        sim_order o = s->orders[i];
        remove_order(s, i);
        o.status = VX_SIM_CANCELED;
        order_event(s, &o, 0);
        return 0;
    }
    return VX_SIM_ERR_UNKNOWN_ORDER;
}

/* ---- filling ---------------------------------------------------------------------------- */

/* Apply a fill of signed quantity q at price px to a position; returns the
 * realized PnL. Isolated margin moves with it: an opening fill adds its
 * initial margin, a closing fill releases its share. */
static int64_t apply_fill(sim_symbol *y, int ps, int64_t q, int64_t px) {
    sim_pos *p = &y->p[ps];
    if (p->qty == 0 || (p->qty > 0) == (q > 0)) {
        i128 cost = (i128)p->entry_price * abs64(p->qty) + (i128)px * abs64(q);
        p->qty += q;
        p->entry_price = div_floor(cost + abs64(p->qty) / 2, abs64(p->qty)); /* nearest */
        if (y->isolated) p->iso_margin += div_ceil((i128)notional(px, abs64(q)), y->leverage);
        return 0;
    }
    int64_t before = abs64(p->qty);
    int64_t closing = abs64(q) < before ? abs64(q) : before;
    int64_t dir = p->qty > 0 ? 1 : -1;
    int64_t realized = div_floor((i128)(px - p->entry_price) * closing * dir, VX_SIM_SCALE);
    if (y->isolated) p->iso_margin -= div_floor((i128)p->iso_margin * closing, before);
    p->qty += q;
    if (p->qty == 0) {
        p->entry_price = 0;
        p->iso_margin = 0;
    } else if ((p->qty > 0) != (dir > 0)) { /* flipped (one-way): the rest opens at px */
        p->entry_price = px;
        if (y->isolated) p->iso_margin = div_ceil((i128)notional(px, abs64(p->qty)), y->leverage);
    }
    return realized;
}

/* Fill (part of) open order i; returns 1 when the order is done and removed. */
static int fill_order(vx_sim *s, size_t i, int64_t px, int maker) {
    sim_order *o = &s->orders[i];
    sim_symbol *y = &s->sym[o->req.symbol];
    int ps = o->req.position_side;
    int64_t qty = o->req.qty - o->filled;
    if (o->req.reduce_only || (s->hedge && closes(s, &o->req))) {
        /* reduce-only, and every closing order in hedge mode, never opens or flips */
        int64_t have = abs64(y->p[ps].qty);
        if (!closes(s, &o->req) || have == 0) {
            sim_order done = *o;
            remove_order(s, i);
            done.status = VX_SIM_EXPIRED;
            order_event(s, &done, VX_SIM_ERR_REDUCE_ONLY);
            return 1;
        }
        if (qty > have) qty = have;
    }
    int64_t fee = charge(notional(px, qty), maker ? y->cfg.maker_fee_ppm : y->cfg.taker_fee_ppm);
    int64_t realized = apply_fill(y, ps, qty * o->req.side, px);
    s->wallet += realized - fee;
    i128 cost = (i128)o->avg_price * o->filled + (i128)px * qty;
    o->filled += qty;
    o->avg_price = div_floor(cost + o->filled / 2, o->filled);
    vx_sim_event *e = push_event(s, VX_SIM_EV_FILL, o->req.symbol);
    if (e) {
        e->order_id = o->id;
        memcpy(e->client_id, o->req.client_id, sizeof e->client_id);
        e->side = o->req.side;
        e->type = o->req.type;
        e->price = px;
        e->qty = qty;
        e->filled = o->filled;
        e->avg_price = o->avg_price;
        e->fee = fee;
        e->realized_pnl = realized;
        e->maker = maker;
        e->trade_id = s->next_trade_id++;
        event_side(s, e, o->req.symbol, ps);
    }
    sim_order done = *o;
    /* a reduce-only clamped to the position ends there: the rest would open a new one */
    done.status = done.filled == done.req.qty ? VX_SIM_FILLED : VX_SIM_EXPIRED;
    remove_order(s, i);
    order_event(s, &done, 0);
    event_side(s, push_event(s, VX_SIM_EV_ACCOUNT, done.req.symbol), done.req.symbol, ps);
    return 1;
}

/* Adverse slippage: the fixed bps, plus impact_bps scaled by the order's
 * share of the candle's volume when the volume is known. */
static int64_t slipped(const sim_symbol *y, int side, int64_t px, int64_t qty) {
    const vx_sim_symbol_cfg *c = &y->cfg;
    int64_t slip = div_ceil((i128)px * c->slippage_bps, 10000);
    if (c->impact_bps && y->volume > 0) slip += div_ceil((i128)px * c->impact_bps * qty, (i128)10000 * y->volume);
    if (side == VX_SIM_BUY) return div_ceil((i128)(px + slip), c->tick) * c->tick;
    return div_floor((i128)(px - slip), c->tick) * c->tick;
}

/* Has this conditional order fired at price px? Trailing stops track here. */
static int triggered(sim_order *o, int64_t px) {
    int buy = o->req.side == VX_SIM_BUY;
    switch (o->req.type) {
    case VX_SIM_STOP_MARKET:
    case VX_SIM_STOP:
        return buy ? px >= o->req.stop_price : px <= o->req.stop_price;
    case VX_SIM_TAKE_PROFIT_MARKET:
    case VX_SIM_TAKE_PROFIT:
        return buy ? px <= o->req.stop_price : px >= o->req.stop_price;
    case VX_SIM_TRAILING_STOP_MARKET:
        if (!o->armed) {
            int64_t a = o->req.activation_price;
            if (a && (buy ? px > a : px < a)) return 0;
            o->armed = 1;
            o->extreme = px;
            return 0;
        }
        if (buy ? px < o->extreme : px > o->extreme) o->extreme = px;
        /* a sell trails the high and fires callback below it; a buy trails the low */
        return buy ? (i128)px * 1000000 >= (i128)o->extreme * (1000000 + o->req.callback_ppm)
                   : (i128)px * 1000000 <= (i128)o->extreme * (1000000 - o->req.callback_ppm);
    default:
        return 0;
    }
}

/* A fired conditional that opens or adds to a position must find the
 * margin for it now, as the venue checks it when the order is triggered:
 * the order margin at this price and the taker fee. */
static int margin_at_trigger(vx_sim *s, const sim_order *o, int64_t px) {
    const sim_symbol *y = &s->sym[o->req.symbol];
    if (o->req.reduce_only || o->req.close_position || (s->hedge && closes(s, &o->req))) return 1;
    int limit = o->req.type == VX_SIM_STOP || o->req.type == VX_SIM_TAKE_PROFIT;
    int64_t n = notional(limit ? o->req.price : px, o->req.qty);
    int64_t need = div_ceil((i128)n, y->leverage) + charge(n, y->cfg.taker_fee_ppm);
    return need <= vx_sim_available(s);
}

/* A fired conditional becomes the plain order it stands for, at this tick.
 * Returns 0, or 1 when it was expired for lack of margin (and removed). */
static int fire(vx_sim *s, size_t k, int64_t px) {
    sim_order *o = &s->orders[k];
    const sim_symbol *y = &s->sym[o->req.symbol];
    if (!margin_at_trigger(s, o, px)) {
        sim_order done = *o;
        remove_order(s, k);
        done.status = VX_SIM_EXPIRED;
        order_event(s, &done, 0);
        return 1;
    }
    if (o->req.close_position) {
        const sim_pos *p = &y->p[o->req.position_side];
        o->req.qty = closes(s, &o->req) ? abs64(p->qty) : 0;
    }
    int limit = o->req.type == VX_SIM_STOP || o->req.type == VX_SIM_TAKE_PROFIT;
    o->req.type = limit ? VX_SIM_LIMIT : VX_SIM_MARKET;
    o->crossed = limit && (o->req.side == VX_SIM_BUY ? o->req.price >= px : o->req.price <= px);
    order_event(s, o, 0); /* the venue reports the trigger as an update of the same order */
    return 0;
}

/* Execute what this price allows, in order of arrival. */
static void match(vx_sim *s, int symbol, int64_t px) {
    for (size_t k = 0; k < s->norders;) {
        sim_order *o = &s->orders[k];
        if (o->req.symbol == symbol && !o->req.working_mark && o->active_at <= s->now_ms && is_conditional(o->req.type) &&
            triggered(o, px) && fire(s, k, px))
            continue; /* removed: the next order is now at k */
        k++;
    }
    size_t i = 0;
    while (i < s->norders) {
        sim_order *o = &s->orders[i];
        if (o->req.symbol != symbol || o->active_at > s->now_ms) { /* another symbol, or still on its way */
            i++;
            continue;
        }
        const vx_sim_symbol_cfg *c = &s->sym[symbol].cfg;
        int buy = o->req.side == VX_SIM_BUY;
        if (is_conditional(o->req.type)) {
            i++;
            continue;
        }
        if (o->req.qty == 0) { /* close-position with nothing left to close */
            sim_order done = *o;
            remove_order(s, i);
            done.status = VX_SIM_EXPIRED;
            order_event(s, &done, 0);
            continue;
        }
        if (o->req.type == VX_SIM_MARKET) {
            fill_order(s, i, slipped(&s->sym[symbol], o->req.side, px, o->req.qty - o->filled), 0);
        } else if (o->crossed) {
            /* taker at the next price, never worse than its limit */
            if (buy ? px <= o->req.price : px >= o->req.price) {
                fill_order(s, i, px, 0);
            } else if (o->req.tif == VX_SIM_IOC || o->req.tif == VX_SIM_FOK) {
                sim_order done = *o;
                remove_order(s, i);
                done.status = VX_SIM_EXPIRED;
                order_event(s, &done, 0);
            } else {
                o->crossed = 0; /* the market moved away: it rests as a maker */
                i++;
            }
        } else if (buy ? px < o->req.price : px > o->req.price) {
            /* traded through: filled at its price, once it has waited out its place in the queue */
            if (o->through_since < 0) o->through_since = s->now_ms;
            if (s->now_ms - o->through_since >= c->queue_ms) fill_order(s, i, o->req.price, 1);
            else i++;
        } else {
            o->through_since = -1; /* back on the other side: the queue starts over */
            i++;
        }
    }
}

/* Below the maintenance margin: every position is closed at the last price
 * and the liquidation fee charged; open orders are cancelled. */
/* A cheap screen in doubles: only an account within a few percent of a
 * maintenance margin gets the exact integer check (money itself is never
 * computed in floating point). */
static int clearly_safe(const vx_sim *s) {
    double cross_eq = (double)(s->wallet - total_iso_margin(s)), cross_maint = 0;
    int any_cross = 0;
    for (int i = 0; i < s->nsym; i++) {
        const sim_symbol *y = &s->sym[i];
        for (int ps = 0; ps < 3; ps++) {
            const sim_pos *p = &y->p[ps];
            if (!p->qty) continue;
            double q = (double)p->qty, px = (double)value_price(y);
            double upnl = (px - (double)p->entry_price) * q / (double)VX_SIM_SCALE;
            double maint = px * (q < 0 ? -q : q) / (double)VX_SIM_SCALE * y->cfg.maint_margin_ppm / 1e6;
            if (y->isolated) {
                if ((double)p->iso_margin + upnl <= maint * 1.05 + 1e4) return 0;
            } else {
                any_cross = 1;
                cross_eq += upnl;
                cross_maint += maint;
            }
        }
    }
    return !any_cross || cross_eq > cross_maint * 1.05 + 1e4;
}

/* Close one position at the last price with the liquidation fee; the loss
 * it can cause is capped at `cap` (an isolated position's margin; for cross,
 * what the wallet holds): beyond that it is the insurance fund's, as on the venue. */
static void liquidate(vx_sim *s, int i, int ps, int64_t cap) {
    sim_symbol *y = &s->sym[i];
    sim_pos *p = &y->p[ps];
    int64_t px = value_price(y), q = -p->qty;
    int64_t fee = charge(notional(px, abs64(q)), y->cfg.liq_fee_ppm);
    int64_t realized = apply_fill(y, ps, q, px);
    if (realized < -cap) realized = -cap;
    int64_t left = cap + realized;
    if (fee > left) fee = left > 0 ? left : 0;
    s->wallet += realized - fee;
    if (s->wallet < 0) s->wallet = 0;
    vx_sim_event *e = push_event(s, VX_SIM_EV_LIQUIDATION, i);
    if (e) {
        e->side = q > 0 ? VX_SIM_BUY : VX_SIM_SELL;
        e->price = px;
        e->qty = abs64(q);
        e->fee = fee;
        e->realized_pnl = realized;
        e->trade_id = s->next_trade_id++;
        event_side(s, e, i, ps);
    }
}

static void cancel_orders_of(vx_sim *s, int symbol) {
    size_t i = 0;
    while (i < s->norders) {
        if (symbol >= 0 && s->orders[i].req.symbol != symbol) {
            i++;
            continue;
        }
        sim_order o = s->orders[i];
        remove_order(s, i);
        o.status = VX_SIM_CANCELED;
        order_event(s, &o, 0);
    }
}

/* Isolated positions are liquidated one by one when their margin plus PnL
 * falls to their maintenance margin; cross positions all together when the
 * account's cross equity does. */
static void check_liquidation(vx_sim *s) {
    if (clearly_safe(s)) return;
    for (int i = 0; i < s->nsym; i++) {
        sim_symbol *y = &s->sym[i];
        if (!y->isolated) continue;
        for (int ps = 0; ps < 3; ps++) {
            sim_pos *p = &y->p[ps];
            if (!p->qty) continue;
            int64_t maint = charge(notional(value_price(y), abs64(p->qty)), y->cfg.maint_margin_ppm);
            if (p->iso_margin + unrealized(y, ps) > maint) continue;
            int64_t margin = p->iso_margin;
            cancel_orders_of(s, i);
            liquidate(s, i, ps, margin);
            push_event(s, VX_SIM_EV_ACCOUNT, i);
        }
    }
    int64_t maint = 0;
    int any = 0;
    for (int i = 0; i < s->nsym; i++) {
        sim_symbol *y = &s->sym[i];
        if (y->isolated) continue;
        for (int ps = 0; ps < 3; ps++) {
            if (!y->p[ps].qty) continue;
            any = 1;
            maint += charge(notional(value_price(y), abs64(y->p[ps].qty)), y->cfg.maint_margin_ppm);
        }
    }
    if (!any || cross_equity(s) > maint) return;
    cancel_orders_of(s, -1);
    for (int i = 0; i < s->nsym; i++) {
        sim_symbol *y = &s->sym[i];
        if (y->isolated) continue;
        for (int ps = 0; ps < 3; ps++)
            if (y->p[ps].qty) liquidate(s, i, ps, s->wallet - total_iso_margin(s));
    }
    push_event(s, VX_SIM_EV_ACCOUNT, -1);
}

void vx_sim_tick(vx_sim *s, int symbol, int64_t price, int64_t time_ms) {
    if (symbol < 0 || symbol >= s->nsym || price <= 0) return;
    if (time_ms > s->now_ms) s->now_ms = time_ms;
    sim_symbol *y = &s->sym[symbol];
    y->last_price = price;
    y->has_price = 1;
    match(s, symbol, price);
    check_liquidation(s);
}

void vx_sim_candle(vx_sim *s, int symbol, int64_t open_time, int64_t o, int64_t h, int64_t l, int64_t c,
                   int64_t interval_ms) {
    if (symbol < 0 || symbol >= s->nsym) return;
    vx_sim_tick(s, symbol, o, open_time);
    const sim_symbol *y = &s->sym[symbol];
    int64_t pos = y->p[0].qty + y->p[1].qty + y->p[2].qty; /* net: adverse to the net exposure */
    int low_first = pos > 0 || (pos == 0 && (o - l) >= (h - o));
    int64_t q = interval_ms / 4;
    vx_sim_tick(s, symbol, low_first ? l : h, open_time + q);
    vx_sim_tick(s, symbol, low_first ? h : l, open_time + 2 * q);
    vx_sim_tick(s, symbol, c, open_time + interval_ms - 1);
}

void vx_sim_mark(vx_sim *s, int symbol, int64_t mark, int64_t time_ms) {
    if (symbol < 0 || symbol >= s->nsym || mark <= 0) return;
    if (time_ms > s->now_ms) s->now_ms = time_ms;
    sim_symbol *y = &s->sym[symbol];
    y->mark_price = mark;
    size_t k = 0;
    while (k < s->norders) {
        sim_order *o = &s->orders[k];
        if (o->req.symbol != symbol || !o->req.working_mark || o->active_at > s->now_ms || !is_conditional(o->req.type) ||
            !triggered(o, mark)) {
            k++;
            continue;
        }
        if (fire(s, k, y->has_price ? y->last_price : mark)) continue; /* expired: no margin for it */
        /* a fired market form executes now at the last trade; a limit form waits for the next trade */
        if (o->req.type == VX_SIM_MARKET && y->has_price) {
            if (o->req.qty == 0) {
                sim_order done = *o;
                remove_order(s, k);
                done.status = VX_SIM_EXPIRED;
                order_event(s, &done, 0);
            } else {
                fill_order(s, k, slipped(y, o->req.side, y->last_price, o->req.qty - o->filled), 0);
            }
            continue;
        }
        k++;
    }
    check_liquidation(s);
}

void vx_sim_candle_v(vx_sim *s, int symbol, int64_t open_time, int64_t o, int64_t h, int64_t l, int64_t c,
                     int64_t volume, int64_t interval_ms) {
    if (symbol < 0 || symbol >= s->nsym) return;
    s->sym[symbol].volume = volume;
    vx_sim_candle(s, symbol, open_time, o, h, l, c, interval_ms);
}

void vx_sim_funding(vx_sim *s, int symbol, int64_t rate, int64_t mark, int64_t time_ms) {
    if (symbol < 0 || symbol >= s->nsym) return;
    if (time_ms > s->now_ms) s->now_ms = time_ms;
    sim_symbol *y = &s->sym[symbol];
    for (int ps = 0; ps < 3; ps++) {
        sim_pos *p = &y->p[ps];
        if (!p->qty) continue;
        /* longs pay a positive rate; what is paid rounds up, what is received down */
        i128 amount = (i128)notional(mark, abs64(p->qty)) * rate * (p->qty > 0 ? -1 : 1);
        int64_t pay = div_floor(amount, VX_SIM_SCALE);
        s->wallet += pay;
        if (y->isolated) { /* an isolated position pays from (and is paid into) its own margin */
            p->iso_margin += pay;
            if (p->iso_margin < 0) p->iso_margin = 0;
        }
        vx_sim_event *e = push_event(s, VX_SIM_EV_FUNDING, symbol);
        if (e) {
            e->realized_pnl = pay;
            e->price = mark;
            event_side(s, e, symbol, ps);
        }
    }
    check_liquidation(s);
}

void vx_sim_restore(vx_sim *s, int64_t wallet, int64_t next_order_id) {
    s->wallet = wallet;
    if (next_order_id > s->next_order_id) s->next_order_id = next_order_id;
}

void vx_sim_set_ids(vx_sim *s, int64_t next_order_id, int64_t next_trade_id) {
    /* ids only move forward: an id the venue handed out is never handed out again */
    if (next_order_id > s->next_order_id) s->next_order_id = next_order_id;
    if (next_trade_id > s->next_trade_id) s->next_trade_id = next_trade_id;
}

int64_t vx_sim_next_trade_id(const vx_sim *s) { return s->next_trade_id; }

int vx_sim_restore_position(vx_sim *s, int symbol, int side, int64_t qty, int64_t entry, int32_t leverage,
                            int64_t last_price, int32_t isolated, int64_t isolated_margin) {
    if (symbol < 0 || symbol >= s->nsym || side < 0 || side > 2) return VX_SIM_ERR_SYMBOL;
    sim_symbol *y = &s->sym[symbol];
    if (leverage < 1 || leverage > y->cfg.max_leverage) return VX_SIM_ERR_LEVERAGE;
    y->p[side].qty = qty;
    y->p[side].entry_price = qty ? entry : 0;
    y->p[side].iso_margin = qty && isolated ? isolated_margin : 0;
    y->leverage = leverage;
    y->isolated = isolated ? 1 : 0;
    if (last_price > 0) {
        y->last_price = last_price;
        y->has_price = 1;
    }
    return 0;
}

void vx_sim_restore_mode(vx_sim *s, int hedge) { s->hedge = hedge ? 1 : 0; }
