--- vibex.exchange.errors — venue errors as values a strategy can act on.
--
-- Every error a venue call returns is a vibex.errors value (tostring gives
-- one readable line; err.retryable says whether to try again later). The
-- kinds a venue gives (see vibex.errors.KINDS for the whole vocabulary):
--   rejected      the venue refused it; do not retry unchanged
--   unavailable   transient (disconnected, 503, shutting down): retry later
--   unknown       the outcome is unknown (the order may exist):
--                 look it up before doing anything else
--   rate_limited  slow down (retry_after_ms says how long)
--   banned        418: the venue bans this IP until `until_ms`
--   auth          keys, signature or permissions: fix the config
--   clock         timestamp/nonce outside the window: resync time
--   not_found     the order does not exist (-2013 on a query or cancel)
--   circuit_open  not sent: the venue's circuit breaker is open
--   filter        refused locally: the order breaks a symbol filter
--   invalid       refused locally: a malformed request
--   shutdown      not sent: the process is stopping
-- Context fields: venue; name, the venue's name for the code (e.g.
-- "MARGIN_NOT_SUFFICIENT"); code (-2019); status (HTTP); request
-- ("POST /fapi/v1/order symbol=BTCUSDT&side=BUY&…", secrets masked).
local errors = require "vibex.errors"

local M = {}

-- code -> {NAME, kind}; codes from the V1/V3 futures "Error Codes" lists.
local CODES = {
  [-1000] = { "UNKNOWN", "unknown" },
  [-1001] = { "DISCONNECTED", "unavailable" },
  [-1002] = { "UNAUTHORIZED", "auth" },
  [-1003] = { "TOO_MANY_REQUESTS", "rate_limited" },
  [-1004] = { "DUPLICATE_IP", "rejected" },
  [-1005] = { "NO_SUCH_IP", "rejected" },
  [-1006] = { "UNEXPECTED_RESP", "unknown" },
  [-1007] = { "TIMEOUT", "unknown" },
  [-1010] = { "ERROR_MSG_RECEIVED", "rejected" },
  [-1011] = { "NON_WHITE_LIST", "auth" },
  [-1013] = { "INVALID_MESSAGE", "rejected" },
  [-1014] = { "UNKNOWN_ORDER_COMPOSITION", "rejected" },
  [-1015] = { "TOO_MANY_ORDERS", "rate_limited" },
  [-1016] = { "SERVICE_SHUTTING_DOWN", "unavailable" },
  [-1020] = { "UNSUPPORTED_OPERATION", "rejected" },
  [-1021] = { "INVALID_TIMESTAMP", "clock" },
  [-1022] = { "INVALID_SIGNATURE", "auth" },
  [-1023] = { "START_TIME_GREATER_THAN_END_TIME", "rejected" },
  [-1100] = { "ILLEGAL_CHARS", "rejected" },
  [-1101] = { "TOO_MANY_PARAMETERS", "rejected" },
  [-1102] = { "MANDATORY_PARAM_EMPTY_OR_MALFORMED", "rejected" },
  [-1103] = { "UNKNOWN_PARAM", "rejected" },
  [-1104] = { "UNREAD_PARAMETERS", "rejected" },
  [-1105] = { "PARAM_EMPTY", "rejected" },
  [-1106] = { "PARAM_NOT_REQUIRED", "rejected" },
  [-1108] = { "BAD_ASSET", "rejected" },
  [-1109] = { "BAD_ACCOUNT", "rejected" },
  [-1110] = { "BAD_INSTRUMENT_TYPE", "rejected" },
  [-1111] = { "BAD_PRECISION", "rejected" },
  [-1112] = { "NO_DEPTH", "rejected" },
  [-1113] = { "WITHDRAW_NOT_NEGATIVE", "rejected" },
  [-1114] = { "TIF_NOT_REQUIRED", "rejected" },
  [-1115] = { "INVALID_TIF", "rejected" },
  [-1116] = { "INVALID_ORDER_TYPE", "rejected" },
  [-1117] = { "INVALID_SIDE", "rejected" },
  [-1118] = { "EMPTY_NEW_CL_ORD_ID", "rejected" },
  [-1119] = { "EMPTY_ORG_CL_ORD_ID", "rejected" },
  [-1120] = { "BAD_INTERVAL", "rejected" },
  [-1121] = { "BAD_SYMBOL", "rejected" },
  [-1125] = { "INVALID_LISTEN_KEY", "rejected" },
  [-1127] = { "MORE_THAN_XX_HOURS", "rejected" },
  [-1128] = { "OPTIONAL_PARAMS_BAD_COMBO", "rejected" },
  [-1130] = { "INVALID_PARAMETER", "rejected" },
  [-1136] = { "INVALID_NEW_ORDER_RESP_TYPE", "rejected" },
  [-2010] = { "NEW_ORDER_REJECTED", "rejected" },
  [-2011] = { "CANCEL_REJECTED", "rejected" },
  [-2013] = { "NO_SUCH_ORDER", "rejected" },
  [-2014] = { "BAD_API_KEY_FMT", "auth" },
  [-2015] = { "REJECTED_MBX_KEY", "auth" },
  [-2016] = { "NO_TRADING_WINDOW", "rejected" },
  [-2018] = { "BALANCE_NOT_SUFFICIENT", "rejected" },
  [-2019] = { "MARGIN_NOT_SUFFICIENT", "rejected" },
  [-2020] = { "UNABLE_TO_FILL", "rejected" },
  [-2021] = { "ORDER_WOULD_IMMEDIATELY_TRIGGER", "rejected" },
  [-2022] = { "REDUCE_ONLY_REJECT", "rejected" },
  [-2023] = { "USER_IN_LIQUIDATION", "rejected" },
  [-2024] = { "POSITION_NOT_SUFFICIENT", "rejected" },
  [-2025] = { "MAX_OPEN_ORDER_EXCEEDED", "rejected" },
  [-2026] = { "REDUCE_ONLY_ORDER_TYPE_NOT_SUPPORTED", "rejected" },
  [-2027] = { "MAX_LEVERAGE_RATIO", "rejected" },
  [-2028] = { "MIN_LEVERAGE_RATIO", "rejected" },
  [-2031] = { "INVALID_BUILDER_PARAMETER", "rejected" },
  [-4225] = { "NONCE_EXPIRED", "clock" },
}

-- The 40xx filter and parameter codes are all plain rejections.
local FOURTY = {
  [-4000] = "INVALID_ORDER_STATUS", [-4001] = "PRICE_LESS_THAN_ZERO", [-4002] = "PRICE_GREATER_THAN_MAX_PRICE",
  [-4003] = "QTY_LESS_THAN_ZERO", [-4004] = "QTY_LESS_THAN_MIN_QTY", [-4005] = "QTY_GREATER_THAN_MAX_QTY",
  [-4006] = "STOP_PRICE_LESS_THAN_ZERO", [-4007] = "STOP_PRICE_GREATER_THAN_MAX_PRICE",
  [-4008] = "TICK_SIZE_LESS_THAN_ZERO", [-4009] = "MAX_PRICE_LESS_THAN_MIN_PRICE",
  [-4010] = "MAX_QTY_LESS_THAN_MIN_QTY", [-4011] = "STEP_SIZE_LESS_THAN_ZERO",
  [-4012] = "MAX_NUM_ORDERS_LESS_THAN_ZERO", [-4013] = "PRICE_LESS_THAN_MIN_PRICE",
  [-4014] = "PRICE_NOT_INCREASED_BY_TICK_SIZE", [-4015] = "INVALID_CL_ORD_ID_LEN",
  [-4016] = "PRICE_HIGHTER_THAN_MULTIPLIER_UP", [-4017] = "MULTIPLIER_UP_LESS_THAN_ZERO",
  [-4018] = "MULTIPLIER_DOWN_LESS_THAN_ZERO", [-4019] = "COMPOSITE_SCALE_OVERFLOW",
  [-4020] = "TARGET_STRATEGY_INVALID", [-4021] = "INVALID_DEPTH_LIMIT", [-4022] = "WRONG_MARKET_STATUS",
  [-4023] = "QTY_NOT_INCREASED_BY_STEP_SIZE", [-4024] = "PRICE_LOWER_THAN_MULTIPLIER_DOWN",
  [-4025] = "MULTIPLIER_DECIMAL_LESS_THAN_ZERO", [-4026] = "COMMISSION_INVALID",
  [-4027] = "INVALID_ACCOUNT_TYPE", [-4028] = "INVALID_LEVERAGE", [-4029] = "INVALID_TICK_SIZE_PRECISION",
  [-4030] = "INVALID_STEP_SIZE_PRECISION", [-4031] = "INVALID_WORKING_TYPE",
  [-4032] = "EXCEED_MAX_CANCEL_ORDER_SIZE", [-4033] = "INSURANCE_ACCOUNT_NOT_FOUND",
  [-4044] = "INVALID_BALANCE_TYPE", [-4045] = "MAX_STOP_ORDER_EXCEEDED",
  [-4046] = "NO_NEED_TO_CHANGE_MARGIN_TYPE", [-4047] = "THERE_EXISTS_OPEN_ORDERS",
  [-4048] = "THERE_EXISTS_QUANTITY", [-4049] = "ADD_ISOLATED_MARGIN_REJECT",
  [-4050] = "CROSS_BALANCE_INSUFFICIENT", [-4051] = "ISOLATED_BALANCE_INSUFFICIENT",
  [-4052] = "NO_NEED_TO_CHANGE_AUTO_ADD_MARGIN", [-4053] = "AUTO_ADD_CROSSED_MARGIN_REJECT",
  [-4054] = "ADD_ISOLATED_MARGIN_NO_POSITION_REJECT", [-4055] = "AMOUNT_MUST_BE_POSITIVE",
  [-4056] = "INVALID_API_KEY_TYPE", [-4057] = "INVALID_RSA_PUBLIC_KEY", [-4058] = "MAX_PRICE_TOO_LARGE",
  [-4059] = "NO_NEED_TO_CHANGE_POSITION_SIDE", [-4060] = "INVALID_POSITION_SIDE",
  [-4061] = "POSITION_SIDE_NOT_MATCH", [-4062] = "REDUCE_ONLY_CONFLICT",
  [-4067] = "POSITION_SIDE_CHANGE_EXISTS_OPEN_ORDERS", [-4068] = "POSITION_SIDE_CHANGE_EXISTS_QUANTITY",
  [-4082] = "INVALID_BATCH_PLACE_ORDER_SIZE", [-4083] = "PLACE_BATCH_ORDERS_FAIL",
  [-4084] = "UPCOMING_METHOD", [-4085] = "INVALID_NOTIONAL_LIMIT_COEF",
  [-4086] = "INVALID_PRICE_SPREAD_THRESHOLD", [-4087] = "REDUCE_ONLY_ORDER_PERMISSION",
  [-4088] = "NO_PLACE_ORDER_PERMISSION", [-4104] = "INVALID_CONTRACT_TYPE",
  [-4114] = "INVALID_CLIENT_TRAN_ID_LEN", [-4115] = "DUPLICATED_CLIENT_TRAN_ID",
  [-4118] = "REDUCE_ONLY_MARGIN_CHECK_FAILED", [-4131] = "MARKET_ORDER_REJECT",
  [-4135] = "INVALID_ACTIVATION_PRICE", [-4137] = "QUANTITY_EXISTS_WITH_CLOSE_POSITION",
  [-4138] = "REDUCE_ONLY_MUST_BE_TRUE", [-4139] = "ORDER_TYPE_CANNOT_BE_MKT",
  [-4140] = "INVALID_OPENING_POSITION_STATUS", [-4141] = "SYMBOL_ALREADY_CLOSED",
  [-4142] = "STRATEGY_INVALID_TRIGGER_PRICE", [-4144] = "INVALID_PAIR",
  [-4161] = "ISOLATED_LEVERAGE_REJECT_WITH_POSITION", [-4164] = "MIN_NOTIONAL",
  [-4165] = "INVALID_TIME_INTERVAL", [-4183] = "PRICE_HIGHTER_THAN_STOP_MULTIPLIER_UP",
  [-4184] = "PRICE_LOWER_THAN_STOP_MULTIPLIER_DOWN",
}
for code, name in pairs(FOURTY) do CODES[code] = { name, "rejected" } end

M.CODES = CODES

local function source(fields) return fields.venue or "venue" end

--- The named, classified error for a venue code.
---@param code integer the venue's error code (-2019)
---@param msg string the venue's text
---@param fields table|nil context (venue, status, request, …)
---@return vibex.Error
function M.from_code(code, msg, fields)
  local def = CODES[code]
  local e = fields or {}
  e.code, e.name, e.source = code, def and def[1] or "UNLISTED", source(e)
  return errors.new(def and def[2] or "rejected", msg, e)
end

--- An error of a given kind without a venue code (transport, local checks).
---@param kind string
---@param msg string
---@param fields table|nil
---@return vibex.Error
function M.new(kind, msg, fields)
  local e = fields or {}
  e.source = source(e)
  return errors.new(kind, msg, e)
end

M.is_error = errors.is
M.retryable = errors.retryable

return M
