--- vibex.exchange.streams — the venue's WebSocket streams, kept alive:
-- market data (vibex.exchange.market_stream) and the account's user data
-- (vibex.exchange.user_stream); what they share is in
-- vibex.exchange.stream_util. See those files for the handlers and options.
--
--   local md = streams.market{url = "wss://fstream.asterdex.com", client = rest, on_kline = fn}
--   local us = streams.user{url = "wss://fstream.asterdex.com", client = rest, on_order = fn}
local market = require "vibex.exchange.market_stream"
local user = require "vibex.exchange.user_stream"
local util = require "vibex.exchange.stream_util"

local M = {}

--- Market streams with reconnect, resubscribe and gap backfill (vibex.exchange.market_stream).
function M.market(o) return market.new(o) end

--- The user data stream with listen-key upkeep and event ordering (vibex.exchange.user_stream).
function M.user(o) return user.new(o) end

--- Parse one kline event with the C scanner: a table, or nil if the message is something else.
function M.parse_kline(msg) return market.parse_kline(msg) end

--- Full-jitter exponential backoff (vibex.exchange.stream_util).
function M.backoff_ms(attempt, min_ms, max_ms) return util.backoff_ms(attempt, min_ms, max_ms) end

--- Stream names are lower-case symbol @ kind: "btcusdt@kline_1m".
function M.normalize(name) return util.normalize(name) end

return M
