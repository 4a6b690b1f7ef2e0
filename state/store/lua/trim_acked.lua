-- Trim a stream to what its consumer groups still need, in one atomic step:
-- no group can read or acknowledge between computing the bound and the
-- XTRIM, so an entry pending or undelivered in any group is never removed.
--
-- A group needs every entry from its oldest pending one (any pending) or
-- else from the one after its last-delivered-id. MINID is the least of
-- those, lowered further so that at least `keep` newest entries stay.
--
-- KEYS[1] the stream. ARGV[1] keep (>= 0); ARGV[2] "1" for a dry run (the
-- bound only; the caller counts what it would remove).
-- Returns {'NOSTREAM'} | {'NOGROUPS', length} |
--   {'OK', minid, removed (false on a dry run), length before, length after,
--    keep bound or false, {{name, pending, oldest pending or false,
--    last-delivered-id, bound, 'pending' | 'delivered'}, ...}}
local stream = KEYS[1]
local keep = tonumber(ARGV[1])
local dry = ARGV[2] == '1'
-- Bigger reads would hold large events in the script's memory at once.
local CHUNK = 1000
local U64_MAX = '18446744073709551615'

if redis.call('EXISTS', stream) == 0 then
  return {'NOSTREAM'}
end

-- IDs are compared as digit strings: their parts are 64-bit, past a Lua
-- number's exact range. Redis writes them without leading zeros.
local function split(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return ms, seq
end

local function less_digits(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end

local function less(a, b)
  local ams, aseq = split(a)
  local bms, bseq = split(b)
  if ams ~= bms then return less_digits(ams, bms) end
  return less_digits(aseq, bseq)
end

local function incr_digits(s)
  local i = #s
  while i > 0 and string.sub(s, i, i) == '9' do i = i - 1 end
  if i == 0 then return '1' .. string.rep('0', #s) end
  return string.sub(s, 1, i - 1) .. string.char(string.byte(s, i) + 1) .. string.rep('0', #s - i)
end

-- The least ID above `id`. At the very last ID there is none: keeping that
-- one entry is the safe side.
local function next_id(id)
  local ms, seq = split(id)
  if seq ~= U64_MAX then return ms .. '-' .. incr_digits(seq) end
  if ms ~= U64_MAX then return incr_digits(ms) .. '-0' end
  return id
end

local groups = redis.call('XINFO', 'GROUPS', stream)
local length = redis.call('XLEN', stream)
if #groups == 0 then
  return {'NOGROUPS', length}
end

local minid = nil
local rows = {}
for _, raw in ipairs(groups) do
  local info = {}
  for i = 1, #raw, 2 do info[raw[i]] = raw[i + 1] end
  -- XPENDING's summary: {count, smallest id, greatest id, consumers}; ids false if none.
  local summary = redis.call('XPENDING', stream, info['name'])
  local pending = tonumber(summary[1])
  local bound, why
  if pending > 0 then
    bound, why = summary[2], 'pending'
  else
    bound, why = next_id(info['last-delivered-id']), 'delivered'
  end
  if minid == nil or less(bound, minid) then minid = bound end
  rows[#rows + 1] = {info['name'], pending, summary[2] or false, info['last-delivered-id'],
                     bound, why}
end

-- The keep-th newest entry, walked back in chunks; a shorter stream keeps all.
local keep_bound = false
if keep > 0 and length > 0 then
  local walked, top = 0, '+'
  while walked < keep do
    local count = math.min(CHUNK, keep - walked)
    local entries = redis.call('XREVRANGE', stream, top, '-', 'COUNT', count)
    if #entries == 0 then break end
    walked = walked + #entries
    keep_bound = entries[#entries][1]
    top = '(' .. keep_bound
  end
  if keep_bound and less(keep_bound, minid) then minid = keep_bound end
end

local removed = false
if not dry then
  removed = redis.call('XTRIM', stream, 'MINID', minid)
end
return {'OK', minid, removed, length, redis.call('XLEN', stream), keep_bound, rows}
