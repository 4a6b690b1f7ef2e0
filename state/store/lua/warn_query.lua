-- Query the near-liquidation warning triggers at a batch of marks, and name
-- a few of the accounts marked dirty, in one call (one shard's keys only).
--
-- KEYS[1] the dirty set; then four per symbol: warn down, warn up, rearm
-- down, rearm up. ARGV[1] how many dirty accounts to name; ARGV[2] the most
-- members to return per set (the rest fire again on a later tick); then two
-- per symbol: down_bound, up_bound (as the tick script takes them).
-- Returns the dirty accounts named (SRANDMEMBER: they stay in the set until
-- a commit that looked at them removes them), then four arrays per symbol:
-- down members scored >= down_bound, up members scored <= up_bound, for
-- the warn sets, then for the rearm sets.
local out = {}
local dirty = tonumber(ARGV[1])
if dirty > 0 then
  out[1] = redis.call('SRANDMEMBER', KEYS[1], dirty)
else
  out[1] = {}
end
local most = ARGV[2]
for i = 0, (#KEYS - 1) / 4 - 1 do
  local k, a = 1 + i * 4, 2 + i * 2
  local down, up = ARGV[a + 1], ARGV[a + 2]
  out[#out + 1] = redis.call('ZRANGEBYSCORE', KEYS[k + 1], down, '+inf', 'LIMIT', 0, most)
  out[#out + 1] = redis.call('ZRANGEBYSCORE', KEYS[k + 2], '-inf', up, 'LIMIT', 0, most)
  out[#out + 1] = redis.call('ZRANGEBYSCORE', KEYS[k + 3], down, '+inf', 'LIMIT', 0, most)
  out[#out + 1] = redis.call('ZRANGEBYSCORE', KEYS[k + 4], '-inf', up, 'LIMIT', 0, most)
end
return out
