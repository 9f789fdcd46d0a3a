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

typedef struct sim_symbol {
    vx_sim_symbol_cfg cfg;
    vx_sim_position pos;
    int has_price;
} sim_symbol;

struct vx_sim {
    int64_t wallet;
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
        e->position = s->sym[symbol].pos.qty;
        e->entry_price = s->sym[symbol].pos.entry_price;
    }
    return e;
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
    y->pos.leverage = cfg->max_leverage < 20 ? cfg->max_leverage : 20;
    return s->nsym++;
}

int vx_sim_set_leverage(vx_sim *s, int symbol, int leverage) {
    if (symbol < 0 || symbol >= s->nsym) return VX_SIM_ERR_SYMBOL;
    if (leverage < 1 || leverage > s->sym[symbol].cfg.max_leverage) return VX_SIM_ERR_LEVERAGE;
    s->sym[symbol].pos.leverage = leverage;
    return 0;
}

static int64_t unrealized(const sim_symbol *y) {
    if (!y->pos.qty || !y->has_price) return 0;
    return div_floor((i128)(y->pos.last_price - y->pos.entry_price) * y->pos.qty, VX_SIM_SCALE);
}

int64_t vx_sim_wallet(const vx_sim *s) { return s->wallet; }

int64_t vx_sim_equity(const vx_sim *s) {
    int64_t eq = s->wallet;
    for (int i = 0; i < s->nsym; i++) eq += unrealized(&s->sym[i]);
    return eq;
}

/* Initial margin an order ties up: its notional over the leverage (reduce-only: none). */
static int64_t order_margin(const vx_sim *s, const sim_order *o) {
    if (o->req.reduce_only || is_conditional(o->req.type)) return 0;
    const sim_symbol *y = &s->sym[o->req.symbol];
    int64_t px = o->req.type == VX_SIM_LIMIT ? o->req.price : y->pos.last_price;
    return div_ceil((i128)notional(px, o->req.qty - o->filled), y->pos.leverage);
}

int64_t vx_sim_available(const vx_sim *s) {
    int64_t avail = vx_sim_equity(s);
    for (int i = 0; i < s->nsym; i++) {
        const sim_symbol *y = &s->sym[i];
        if (y->pos.qty) avail -= div_ceil((i128)notional(y->pos.last_price, abs64(y->pos.qty)), y->pos.leverage);
    }
    for (size_t i = 0; i < s->norders; i++) avail -= order_margin(s, &s->orders[i]);
    return avail;
}

vx_sim_position vx_sim_position_of(const vx_sim *s, int symbol) {
    vx_sim_position p = {0};
    if (symbol >= 0 && symbol < s->nsym) p = s->sym[symbol].pos;
    return p;
}

size_t vx_sim_open_orders(const vx_sim *s) { return s->norders; }

int64_t vx_sim_unrealized(const vx_sim *s, int symbol) {
    return symbol >= 0 && symbol < s->nsym ? unrealized(&s->sym[symbol]) : 0;
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
    return 0;
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
        if (req->close_position) o.req.reduce_only = 1;
        if (add_order(s, &o) != 0) return refuse(s, req, VX_SIM_ERR_PARAM);
        order_event(s, &o, 0);
        return o.id;
    }
    int64_t ref_px = req->type == VX_SIM_LIMIT ? req->price : y->pos.last_price;
    if (req->reduce_only) {
        /* it must face the position: a sell against a long, a buy against a short */
        if (y->pos.qty == 0 || (y->pos.qty > 0) == (req->side == VX_SIM_BUY)) return refuse(s, req, VX_SIM_ERR_REDUCE_ONLY);
    } else if (y->has_price && notional(ref_px, req->qty) < y->cfg.min_notional) {
        return refuse(s, req, VX_SIM_ERR_NOTIONAL);
    }
    int crosses = req->type == VX_SIM_LIMIT && y->has_price &&
                  (req->side == VX_SIM_BUY ? req->price >= y->pos.last_price : req->price <= y->pos.last_price);
    if (req->type == VX_SIM_LIMIT && req->tif == VX_SIM_GTX && crosses) return refuse(s, req, VX_SIM_ERR_GTX);
    sim_order o = {.id = s->next_order_id++, .req = *req, .status = VX_SIM_NEW, .crossed = crosses,
                   .active_at = s->now_ms + y->cfg.latency_ms, .through_since = -1};
    if (!req->reduce_only) {
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

/* Apply a fill of signed quantity q at price px to the position; returns realized PnL. */
static int64_t apply_fill(sim_symbol *y, int64_t q, int64_t px) {
    vx_sim_position *p = &y->pos;
    int64_t realized = 0;
    if (p->qty == 0 || (p->qty > 0) == (q > 0)) {
        i128 cost = (i128)p->entry_price * abs64(p->qty) + (i128)px * abs64(q);
        p->qty += q;
        p->entry_price = div_floor(cost + abs64(p->qty) / 2, abs64(p->qty)); /* nearest */
        return 0;
    }
    int64_t closing = abs64(q) < abs64(p->qty) ? abs64(q) : abs64(p->qty);
    int64_t dir = p->qty > 0 ? 1 : -1;
    realized = div_floor((i128)(px - p->entry_price) * closing * dir, VX_SIM_SCALE);
    p->qty += q;
    if (p->qty == 0) p->entry_price = 0;
    else if ((p->qty > 0) != (dir > 0)) p->entry_price = px; /* flipped: the rest opens at px */
    return realized;
}

/* Fill (part of) open order i; returns 1 when the order is done and removed. */
static int fill_order(vx_sim *s, size_t i, int64_t px, int maker) {
    sim_order *o = &s->orders[i];
    sim_symbol *y = &s->sym[o->req.symbol];
    int64_t qty = o->req.qty - o->filled;
    if (o->req.reduce_only) {
        int faces = y->pos.qty != 0 && (y->pos.qty > 0) != (o->req.side == VX_SIM_BUY);
        if (!faces) {
            sim_order done = *o;
            remove_order(s, i);
            done.status = VX_SIM_EXPIRED;
            order_event(s, &done, VX_SIM_ERR_REDUCE_ONLY);
            return 1;
        }
        if (qty > abs64(y->pos.qty)) qty = abs64(y->pos.qty);
    }
    int64_t fee = charge(notional(px, qty), maker ? y->cfg.maker_fee_ppm : y->cfg.taker_fee_ppm);
    int64_t realized = apply_fill(y, qty * o->req.side, px);
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
    }
    sim_order done = *o;
    /* a reduce-only clamped to the position ends there: the rest would open a new one */
    done.status = done.filled == done.req.qty ? VX_SIM_FILLED : VX_SIM_EXPIRED;
    remove_order(s, i);
    order_event(s, &done, 0);
    push_event(s, VX_SIM_EV_ACCOUNT, done.req.symbol);
    return 1;
}

static int64_t slipped(const vx_sim_symbol_cfg *c, int side, int64_t px) {
    int64_t slip = div_ceil((i128)px * c->slippage_bps, 10000);
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

/* A fired conditional becomes the plain order it stands for, at this tick. */
static void fire(vx_sim *s, sim_order *o, int64_t px) {
    const sim_symbol *y = &s->sym[o->req.symbol];
    if (o->req.close_position) {
        int faces = y->pos.qty != 0 && (y->pos.qty > 0) != (o->req.side == VX_SIM_BUY);
        o->req.qty = faces ? abs64(y->pos.qty) : 0;
    }
    int limit = o->req.type == VX_SIM_STOP || o->req.type == VX_SIM_TAKE_PROFIT;
    o->req.type = limit ? VX_SIM_LIMIT : VX_SIM_MARKET;
    o->crossed = limit && (o->req.side == VX_SIM_BUY ? o->req.price >= px : o->req.price <= px);
    order_event(s, o, 0); /* the venue reports the trigger as an update of the same order */
}

/* Execute what this price allows, in order of arrival. */
static void match(vx_sim *s, int symbol, int64_t px) {
    for (size_t k = 0; k < s->norders; k++) {
        sim_order *o = &s->orders[k];
        if (o->req.symbol == symbol && o->active_at <= s->now_ms && is_conditional(o->req.type) && triggered(o, px))
            fire(s, o, px);
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
            fill_order(s, i, slipped(c, o->req.side, px), 0);
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
/* A cheap screen in doubles: only an account within a few percent of its
 * maintenance margin gets the exact integer check (money itself is never
 * computed in floating point). */
static int clearly_safe(const vx_sim *s) {
    double eq = (double)s->wallet, maint = 0;
    int any = 0;
    for (int i = 0; i < s->nsym; i++) {
        const sim_symbol *y = &s->sym[i];
        if (!y->pos.qty) continue;
        any = 1;
        double q = (double)y->pos.qty, px = (double)y->pos.last_price;
        eq += (px - (double)y->pos.entry_price) * q / (double)VX_SIM_SCALE;
        maint += px * (q < 0 ? -q : q) / (double)VX_SIM_SCALE * y->cfg.maint_margin_ppm / 1e6;
    }
    return !any || eq > maint * 1.05 + 1e4;
}

static void check_liquidation(vx_sim *s) {
    if (clearly_safe(s)) return;
    int64_t maint = 0;
    int any = 0;
    for (int i = 0; i < s->nsym; i++) {
        sim_symbol *y = &s->sym[i];
        if (!y->pos.qty) continue;
        any = 1;
        maint += charge(notional(y->pos.last_price, abs64(y->pos.qty)), y->cfg.maint_margin_ppm);
    }
    if (!any || vx_sim_equity(s) > maint) return;
    while (s->norders) {
        sim_order o = s->orders[s->norders - 1];
        s->norders--;
        o.status = VX_SIM_CANCELED;
        order_event(s, &o, 0);
    }
    for (int i = 0; i < s->nsym; i++) {
        sim_symbol *y = &s->sym[i];
        if (!y->pos.qty) continue;
        int64_t px = y->pos.last_price, q = -y->pos.qty;
        int64_t fee = charge(notional(px, abs64(q)), y->cfg.liq_fee_ppm);
        int64_t realized = apply_fill(y, q, px);
        /* the fee comes out of what margin is left; a loss beyond the wallet is the
         * insurance fund's, as on the venue: the wallet ends at zero, not below */
        int64_t left = s->wallet + realized;
        if (fee > left) fee = left > 0 ? left : 0;
        s->wallet = left - fee < 0 ? 0 : left - fee;
        vx_sim_event *e = push_event(s, VX_SIM_EV_LIQUIDATION, i);
        if (e) {
            e->side = q > 0 ? VX_SIM_BUY : VX_SIM_SELL;
            e->price = px;
            e->qty = abs64(q);
            e->fee = fee;
            e->realized_pnl = realized;
            e->trade_id = s->next_trade_id++;
        }
    }
    push_event(s, VX_SIM_EV_ACCOUNT, -1);
}

void vx_sim_tick(vx_sim *s, int symbol, int64_t price, int64_t time_ms) {
    if (symbol < 0 || symbol >= s->nsym || price <= 0) return;
    if (time_ms > s->now_ms) s->now_ms = time_ms;
    sim_symbol *y = &s->sym[symbol];
    y->pos.last_price = price;
    y->has_price = 1;
    match(s, symbol, price);
    check_liquidation(s);
}

void vx_sim_candle(vx_sim *s, int symbol, int64_t open_time, int64_t o, int64_t h, int64_t l, int64_t c,
                   int64_t interval_ms) {
    if (symbol < 0 || symbol >= s->nsym) return;
    vx_sim_tick(s, symbol, o, open_time);
    int64_t pos = s->sym[symbol].pos.qty;
    int low_first = pos > 0 || (pos == 0 && (o - l) >= (h - o));
    int64_t q = interval_ms / 4;
    vx_sim_tick(s, symbol, low_first ? l : h, open_time + q);
    vx_sim_tick(s, symbol, low_first ? h : l, open_time + 2 * q);
    vx_sim_tick(s, symbol, c, open_time + interval_ms - 1);
}

void vx_sim_funding(vx_sim *s, int symbol, int64_t rate, int64_t mark, int64_t time_ms) {
    if (symbol < 0 || symbol >= s->nsym) return;
    if (time_ms > s->now_ms) s->now_ms = time_ms;
    sim_symbol *y = &s->sym[symbol];
    if (!y->pos.qty) return;
    /* longs pay a positive rate; what is paid rounds up, what is received down */
    i128 amount = (i128)notional(mark, abs64(y->pos.qty)) * rate * (y->pos.qty > 0 ? -1 : 1);
    int64_t pay = div_floor(amount, VX_SIM_SCALE);
    s->wallet += pay;
    vx_sim_event *e = push_event(s, VX_SIM_EV_FUNDING, symbol);
    if (e) {
        e->realized_pnl = pay;
        e->price = mark;
    }
    check_liquidation(s);
}

void vx_sim_restore(vx_sim *s, int64_t wallet, int64_t next_order_id) {
    s->wallet = wallet;
    if (next_order_id > s->next_order_id) s->next_order_id = next_order_id;
}

int vx_sim_restore_position(vx_sim *s, int symbol, int64_t qty, int64_t entry, int32_t leverage, int64_t last_price) {
    if (symbol < 0 || symbol >= s->nsym) return VX_SIM_ERR_SYMBOL;
    sim_symbol *y = &s->sym[symbol];
    if (leverage < 1 || leverage > y->cfg.max_leverage) return VX_SIM_ERR_LEVERAGE;
    y->pos.qty = qty;
    y->pos.entry_price = qty ? entry : 0;
    y->pos.leverage = leverage;
    if (last_price > 0) {
        y->pos.last_price = last_price;
        y->has_price = 1;
    }
    return 0;
}
