--- vibex.db.copyfmt — rows of Lua tables to COPY text in batches. Rows of
-- plain numbers go through one C call per batch (runtime/copyfmt.c: the
-- shortest decimal that reads back as the same double); a batch holding
-- strings (exact decimals from a venue) is written by Lua as given.
local ffi = require "ffi"

require "vibex.cdef" -- the declarations (one registry, checked against the headers at build time)

local C = ffi.C
local fmt, concat, type = string.format, table.concat, type

local M = {}

local BATCH = 5000
local vals, out, out_cap, vals_cap = nil, nil, 0, 0

local function lua_value(v, integer)
  if v == nil then return "\\N" end
  if type(v) == "string" then return v end
  if integer then return fmt("%d", v) end
  local s = fmt("%.15g", v)
  if tonumber(s) ~= v then s = fmt("%.17g", v) end
  return s
end

local function lua_batch(rows, fields, ints, i, j)
  local lines, nc = {}, #fields
  for r = i, j do
    local row, parts = rows[r], {}
    for c = 1, nc do parts[c] = lua_value(row[fields[c]], ints[c]) end
    lines[#lines + 1] = concat(parts, "\t")
  end
  return concat(lines, "\n") .. "\n"
end

--- COPY text for rows[i..j]. fields: column order (keys of each row);
-- ints[c] true for integer columns. A nil value is NULL.
function M.batch(rows, fields, ints, i, j)
  local nc, nr = #fields, j - i + 1
  if nc * nr > vals_cap then
    vals_cap = nc * nr
    vals = ffi.new("double[?]", vals_cap)
    out_cap = vals_cap * 32
    out = ffi.new("char[?]", out_cap)
  end
  local kinds = ffi.new("unsigned char[?]", nc)
  for c = 1, nc do kinds[c - 1] = ints[c] and 1 or 0 end
  local k, nan = 0, 0 / 0
  for r = i, j do
    local row = rows[r]
    for c = 1, nc do
      local v = row[fields[c]]
      if type(v) ~= "number" then
        if v ~= nil then return lua_batch(rows, fields, ints, i, j) end
        v = nan
      end
      vals[k] = v
      k = k + 1
    end
  end
  local n = C.vx_copy_format(vals, kinds, nc, nr, out, out_cap)
  return ffi.string(out, n)
end

--- A producer for Conn:copy: batches of BATCH rows until all are sent.
function M.producer(rows, fields, ints, batch)
  local i, n, size = 0, #rows, batch or BATCH
  return function()
    if i >= n then return nil end
    local j = math.min(n, i + size)
    local s = M.batch(rows, fields, ints, i + 1, j)
    i = j
    return s
  end
end

return M
