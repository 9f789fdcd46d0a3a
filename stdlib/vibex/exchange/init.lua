--- vibex.exchange — venues behind one interface.
--
--   local exchange = require "vibex.exchange"
--   local aster = exchange.aster{credentials = {user = env "ASTER_USER", signer = …, private_key = …}}
--   local bin   = exchange.binance{credentials = {api_key = …, api_secret = …}}
--
-- The interface every venue implements (the simulated venue too):
--   market data   ping, server_time, sync_time, exchange_info, symbol_rules,
--                 klines(symbol, interval, limit | {start_ms, end_ms}),
--                 ticker, ticker_24h, book_ticker, depth, premium_index /
--                 mark_price, funding_rates
--   account       account_info, balances, positions, open_orders, all_orders,
--                 user_trades, income, set_leverage, set_margin_type,
--                 set_position_mode, position_mode
--   orders        prepare (round + check filters), place, place_batch,
--                 modify, cancel, cancel_all, get_order
--   streams       market_stream{on_kline, …}, user_stream{on_order, …}
--                 (vibex.exchange.streams), listen_key,
--                 keepalive_listen_key, close_listen_key
-- Results are the venue's JSON (money as exact decimal strings; klines as
-- numbers); failures are nil, err with err a vibex.exchange.errors value.
local aster = require "vibex.exchange.aster"
local errors = require "vibex.exchange.errors"

local M = {}

M.errors = errors
M.client_order_id = aster.client_order_id

local VENUES = {
  aster = { base_url = "https://fapi.asterdex.com", testnet_url = "https://fapi.asterdex-testnet.com",
            ws_url = "wss://fstream.asterdex.com", chain_id = 1666, testnet_chain_id = 714 },
  binance = { base_url = "https://fapi.binance.com", testnet_url = "https://testnet.binancefuture.com",
              ws_url = "wss://fstream.binance.com" },
}
M.VENUES = VENUES

local function make(venue, o)
  o = o or {}
  local d = VENUES[venue]
  local opts = {}
  for k, v in pairs(o) do opts[k] = v end
  opts.venue = venue
  opts.base_url = o.base_url or (o.testnet and d.testnet_url or d.base_url)
  opts.ws_url = o.ws_url or (not o.base_url and not o.testnet and d.ws_url) or nil
  opts.chain_id = o.chain_id or (o.testnet and d.testnet_chain_id or d.chain_id)
  return aster.new(opts)
end

--- Aster futures. o: credentials, base_url, testnet, chain_id, account,
-- recv_window_ms, timeout_ms (see vibex.exchange.aster).
---@param o table credentials, base_url, testnet, chain_id, account, recv_window_ms, timeout_ms
---@return table client
function M.aster(o) return make("aster", o) end

--- Binance USDⓈ-M futures (same protocol, V1 HMAC keys).
---@param o table credentials, base_url, testnet, account, recv_window_ms, timeout_ms
---@return table client
function M.binance(o)
  local cr = o and o.credentials or {}
  if cr.private_key then error("exchange.binance: Binance uses api_key/api_secret, not V3 wallet keys", 2) end
  return make("binance", o)
end

--- The simulated venue (paper trading, replays): exchange.sim{balance = 10000, symbols = {…}}.
---@param o table balance, symbols, account
---@return table venue
function M.sim(o) return require("vibex.exchange.sim").new(o) end

--- A client for an account entry of the config (accounts[i].exchange).
---@param account table an accounts[i] entry
---@return table|nil client
---@return vibex.Error|nil err
function M.from_config(account)
  local ex = account.exchange
  if ex.venue ~= "aster" and ex.venue ~= "binance" then
    return nil, require("vibex.errors").new("config", ("exchange.from_config: venue %q has no REST client"):format(tostring(ex.venue)))
  end
  return make(ex.venue, { base_url = ex.base_url, ws_url = ex.ws_url, testnet = ex.testnet, recv_window_ms = ex.recv_window_ms,
                          chain_id = ex.chain_id,
                          credentials = ex.credentials, account = account.name })
end

return M
