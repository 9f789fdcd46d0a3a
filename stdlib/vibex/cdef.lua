--- vibex.cdef — the one FFI registry: every C declaration Lua reaches
-- through LuaJIT's FFI, vibex's own C and libpq's, in one place.
--
--   local C = require("vibex.cdef").C        -- ffi.C with everything declared
--
-- Each section copies declarations from the headers it names. The build
-- checks them: `make` runs tests/support/ffi_layout.lua, which compiles a C
-- program against runtime/*.h (and libpq-fe.h, poll.h) printing sizeof and
-- offsetof of every struct declared here and compares them with ffi.sizeof
-- and ffi.offsetof, so a header that drifts fails the build, not a process.
-- Structs listed in LUA_ONLY exist only on the Lua side and are not checked.
-- The candle ring buffer (vx_candles), the simulator's state (vx_sim) and
-- the breaker (vx_breaker) are opaque here: Lua reaches them only through
-- functions (a candle series through vx_candles_view_of).
local ffi = require "ffi"

local M = {}

--- { name, headers, text } in declaration order (later sections use earlier types).
M.SECTIONS = {
  { name = "decimal", headers = "decimal.h", text = [[
typedef struct vx_dec { int64_t m; int scale; } vx_dec;
int vx_dec_parse(const char *s, vx_dec *out);
int vx_dec_from_double(double x, vx_dec *out);
void vx_dec_format(const vx_dec *d, char *out, size_t outlen);
int vx_dec_cmp(const vx_dec *a, const vx_dec *b);
int vx_dec_round_step(const vx_dec *x, const vx_dec *base, const vx_dec *step, int mode, vx_dec *out);
int vx_dec_cmp_product(const vx_dec *a, const vx_dec *b, const vx_dec *c);
int vx_dec_cmp_products(const vx_dec *a, const vx_dec *b, const vx_dec *c, const vx_dec *d);
int vx_dec_div_round_step(const vx_dec *a, const vx_dec *b, const vx_dec *base, const vx_dec *step, int mode, vx_dec *out);
]] },
  { name = "copyfmt", headers = "copyfmt.h", text = [[
size_t vx_copy_format(const double *vals, const unsigned char *kinds, int ncols, int nrows, char *out, size_t cap);
]] },
  { name = "metrics", headers = "metrics.h", text = [[
typedef struct vx_series_head { double value; double sum; uint64_t count; } vx_series_head;
void vx_metric_observe(vx_series_head *s, double v);
]] },
  { name = "breaker", headers = "breaker.h", text = [[
typedef struct vx_breaker vx_breaker;
typedef struct vx_breaker_opts {
  int failure_threshold; int min_calls; double window_ms; double cooldown_ms;
  int half_open_max; int success_threshold;
} vx_breaker_opts;
vx_breaker *vx_breaker_new(void *rt, const char *name, const vx_breaker_opts *o, char *err, int errlen);
void vx_breaker_free(vx_breaker *b);
int vx_breaker_allow(vx_breaker *b);
void vx_breaker_record(vx_breaker *b, int allowed, int ok);
double vx_breaker_retry_in(vx_breaker *b);
void vx_breaker_reset(vx_breaker *b);
int vx_breaker_state(const vx_breaker *b);
]] },
  { name = "ta", headers = "ta.h candles.h", text = [[
typedef struct vx_ta_info {
    const char *name; const char *title; unsigned inputs; int nparams; int noutputs;
    const char *param_names[4]; double param_defaults[4]; unsigned period_params;
    const char *output_names[4];
} vx_ta_info;
typedef struct vx_ta_stream {
    double out[4]; int64_t count; int kind; int noutputs; int lookback; int failed; char err[160];
} vx_ta_stream;
const vx_ta_info *vx_ta_kinds(int *count);
const char *vx_ta_isa(void);
double *vx_ta_alloc(size_t n);
void vx_ta_free(double *p);
int vx_ta_lookback(int kind, const double *params, char *err, size_t errlen);
int vx_ta_batch(int kind, const double *params, size_t n, const double *const *in,
                double *const *out, char *err, size_t errlen);
vx_ta_stream *vx_ta_stream_new(int kind, const double *params, char *err, size_t errlen);
double vx_ta_update(vx_ta_stream *s, double h, double l, double c, double v, double t, int commit);
void vx_ta_reset(vx_ta_stream *s);
void vx_ta_stream_free(vx_ta_stream *s);

typedef struct vx_candles vx_candles;
typedef struct vx_candles_view {
    const double *t, *o, *h, *l, *c, *v, *qv, *n;
    int len, cap, closed;
    int64_t interval_ms, gaps, missing, gap_from, gap_to;
    const char *err;
} vx_candles_view;
void vx_candles_view_of(const vx_candles *c, vx_candles_view *out);
vx_candles *vx_candles_new(int64_t interval_ms, int capacity, char *err, size_t errlen);
void vx_candles_free(vx_candles *c);
int vx_candles_update(vx_candles *c, double t, double o, double h, double l, double cl,
                      double v, double qv, double n, int closed);
int vx_candles_trade(vx_candles *c, double t, double price, double qty);
int vx_candles_close_due(vx_candles *c, double now_ms);
int vx_candles_link(vx_candles *fine, vx_candles *coarse);
int vx_candles_find(const vx_candles *c, double t);
int vx_candles_copy(vx_candles *dst, const vx_candles *src);

typedef struct vx_lua_series { double *p; int64_t n; int64_t cap; } vx_lua_series;
]] },
  { name = "kline_msg", headers = "kline_msg.h", text = [[
typedef struct vx_kline_msg {
  int64_t event_time, open_time, close_time, trades;
  double open, high, low, close, volume, quote_volume, taker_buy_volume, taker_buy_quote_volume;
  int32_t closed;
  char symbol[32];
  char interval[8];
  char stream[64];
} vx_kline_msg;
int vx_kline_msg_parse(const char *s, size_t n, vx_kline_msg *out);
]] },
  { name = "mdsink", headers = "mdsink.h", text = [[
typedef struct vx_quote_msg {
  int64_t event_time, next_funding_time;
  double mark, index_price, funding_rate, bid, bid_qty, ask, ask_qty;
  char symbol[32];
} vx_quote_msg;
typedef struct vx_md_quote {
  double mark, index_price, funding_rate, bid, bid_qty, ask, ask_qty;
  int64_t mark_time, next_funding_time, book_time, marks, books;
  char symbol[24];
} vx_md_quote;
typedef struct vx_md_route {
  vx_candles *candles; int64_t last_open, updates; int32_t paused, live; char symbol[24]; char interval[8];
} vx_md_route;
typedef struct vx_md_sink {
  int32_t nroutes, nquotes;
  uint64_t frames, applied, refused, passed;
  vx_md_route routes[256];
  vx_md_quote quotes[256];
  int16_t route_at[1024];
  int16_t quote_at[1024];
  vx_kline_msg k;
  vx_quote_msg q;
} vx_md_sink;
int vx_md_sink_route(vx_md_sink *s, const char *symbol, const char *interval, vx_candles *c);
int vx_md_sink_unroute(vx_md_sink *s, const char *symbol, const char *interval);
int vx_md_sink_pause(vx_md_sink *s, int route, int paused);
int vx_md_sink_quote(vx_md_sink *s, const char *symbol);
int vx_md_sink_find(const vx_md_sink *s, const char *symbol, const char *interval);
int vx_md_sink_offer(vx_md_sink *s, const char *p, size_t n);
]] },
  { name = "sim", headers = "sim.h", text = [[
typedef struct vx_sim vx_sim;
typedef struct vx_sim_symbol_cfg {
  char name[24]; int64_t tick, step; int64_t min_qty, max_qty, min_notional;
  int32_t maker_fee_ppm, taker_fee_ppm, maint_margin_ppm, liq_fee_ppm, max_leverage, slippage_bps;
  int32_t impact_bps, latency_ms, queue_ms;
} vx_sim_symbol_cfg;
typedef struct vx_sim_order_req {
  int32_t symbol, side, type, tif; int64_t price, qty, stop_price, activation_price;
  int32_t callback_ppm, reduce_only, close_position, position_side, working_mark; char client_id[40];
} vx_sim_order_req;
typedef struct vx_sim_event {
  int32_t kind, symbol; int64_t time_ms, order_id; char client_id[40]; int32_t side, type, status, maker;
  int64_t price, qty, filled, avg_price, fee, realized_pnl, trade_id, wallet, position, entry_price; int32_t reason;
  int32_t position_side; int64_t isolated_margin;
} vx_sim_event;
typedef struct vx_sim_position { int64_t qty, entry_price, last_price; int32_t leverage, isolated; int64_t isolated_margin; } vx_sim_position;
int vx_sim_set_isolated(vx_sim *s, int symbol, int isolated);
int vx_sim_set_hedge(vx_sim *s, int hedge);
vx_sim_position vx_sim_position_side(const vx_sim *s, int symbol, int side);
void vx_sim_restore_mode(vx_sim *s, int hedge);
vx_sim *vx_sim_new(int64_t wallet);
void vx_sim_free(vx_sim *s);
int vx_sim_add_symbol(vx_sim *s, const vx_sim_symbol_cfg *cfg);
int vx_sim_set_leverage(vx_sim *s, int symbol, int leverage);
int64_t vx_sim_place(vx_sim *s, const vx_sim_order_req *req, int64_t now_ms);
int vx_sim_cancel(vx_sim *s, int64_t order_id, int64_t now_ms);
void vx_sim_tick(vx_sim *s, int symbol, int64_t price, int64_t time_ms);
void vx_sim_candle(vx_sim *s, int symbol, int64_t open_time, int64_t o, int64_t h, int64_t l, int64_t c, int64_t interval_ms);
void vx_sim_candle_v(vx_sim *s, int symbol, int64_t open_time, int64_t o, int64_t h, int64_t l, int64_t c, int64_t volume, int64_t interval_ms);
void vx_sim_funding(vx_sim *s, int symbol, int64_t rate, int64_t mark, int64_t time_ms);
void vx_sim_mark(vx_sim *s, int symbol, int64_t mark, int64_t time_ms);
const vx_sim_event *vx_sim_events(vx_sim *s, size_t *n);
void vx_sim_clear_events(vx_sim *s);
int64_t vx_sim_wallet(const vx_sim *s);
int64_t vx_sim_equity(const vx_sim *s);
int64_t vx_sim_available(const vx_sim *s);
vx_sim_position vx_sim_position_of(const vx_sim *s, int symbol);
int64_t vx_sim_unrealized(const vx_sim *s, int symbol, int side);
size_t vx_sim_open_orders(const vx_sim *s);
int vx_format_scaled(int64_t v, int scale, char *out);
void vx_sim_restore(vx_sim *s, int64_t wallet, int64_t next_order_id);
void vx_sim_set_ids(vx_sim *s, int64_t next_order_id, int64_t next_trade_id);
int64_t vx_sim_next_trade_id(const vx_sim *s);
int vx_sim_restore_position(vx_sim *s, int symbol, int side, int64_t qty, int64_t entry, int32_t leverage,
                            int64_t last_price, int32_t isolated, int64_t isolated_margin);
]] },
  { name = "libpq", headers = "libpq-fe.h pgtypes.h poll.h", text = [[
typedef struct pg_conn PGconn;
typedef struct pg_result PGresult;
typedef struct pgNotify { char *relname; int be_pid; char *extra; struct pgNotify *next; } PGnotify;
PGconn *PQconnectStart(const char *conninfo);
int PQconnectPoll(PGconn *conn);
int PQstatus(const PGconn *conn);
int PQsocket(const PGconn *conn);
char *PQerrorMessage(const PGconn *conn);
void PQfinish(PGconn *conn);
int PQsetnonblocking(PGconn *conn, int arg);
int PQsendQueryParams(PGconn *conn, const char *command, int nParams, const unsigned int *paramTypes,
                      const char *const *paramValues, const int *paramLengths, const int *paramFormats, int resultFormat);
int PQsendQuery(PGconn *conn, const char *command);
int PQsendPrepare(PGconn *conn, const char *stmtName, const char *query, int nParams, const unsigned int *paramTypes);
int PQsendQueryPrepared(PGconn *conn, const char *stmtName, int nParams, const char *const *paramValues,
                        const int *paramLengths, const int *paramFormats, int resultFormat);
int PQflush(PGconn *conn);
int PQenterPipelineMode(PGconn *conn);
int PQexitPipelineMode(PGconn *conn);
int PQpipelineSync(PGconn *conn);
int PQconsumeInput(PGconn *conn);
int PQisBusy(PGconn *conn);
PGresult *PQgetResult(PGconn *conn);
int PQresultStatus(const PGresult *res);
char *PQresultErrorMessage(const PGresult *res);
char *PQresultErrorField(const PGresult *res, int fieldcode);
int PQntuples(const PGresult *res);
int PQnfields(const PGresult *res);
char *PQfname(const PGresult *res, int field_num);
unsigned int PQftype(const PGresult *res, int field_num);
char *PQgetvalue(const PGresult *res, int tup_num, int field_num);
int PQgetlength(const PGresult *res, int tup_num, int field_num);
int PQgetisnull(const PGresult *res, int tup_num, int field_num);
char *PQcmdTuples(PGresult *res);
char *PQcmdStatus(PGresult *res);
void PQclear(PGresult *res);
PGnotify *PQnotifies(PGconn *conn);
void PQfreemem(void *ptr);
int PQputCopyData(PGconn *conn, const char *buffer, int nbytes);
int PQputCopyEnd(PGconn *conn, const char *errormsg);
int PQtransactionStatus(const PGconn *conn);
char *PQdb(const PGconn *conn);
char *PQuser(const PGconn *conn);
char *PQhost(const PGconn *conn);
unsigned char *PQunescapeBytea(const unsigned char *strtext, size_t *retbuflength);
double vx_pg_timestamp_ms(const char *s, int *ok);
int64_t vx_days_from_civil(int64_t y, int m, int d);
double strtod(const char *nptr, char **endptr);
struct pollfd { int fd; short events; short revents; };
int poll(struct pollfd *fds, unsigned long nfds, int timeout);
]] },
  { name = "libc", headers = "unistd.h", text = [[
int isatty(int fd);
ssize_t readlink(const char *path, char *buf, size_t bufsiz);
]] },
}

--- Lua-side structs with no C counterpart (not checked against a header).
M.LUA_ONLY = { vx_lua_series = true }

--- Structs whose C counterpart has another name; prefix = true: the Lua
--- struct declares only the leading fields of the C one (sizes differ).
M.C_NAME = {
  vx_series_head = { c = "vx_series", prefix = true }, -- the value/sum/count head of a metrics series
  PGnotify = { c = "PGnotify", prefix = true },         -- libpq's public fields only
}

for _, s in ipairs(M.SECTIONS) do ffi.cdef(s.text) end

M.C = ffi.C
return M
