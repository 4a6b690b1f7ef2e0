-- Record a batch of marks for operators and query the index at each of them,
-- in one call: one command per batch instead of three per symbol (the
-- client's per-command cost is what bounds ticks per second).
--
-- KEYS, three per symbol: the mark hash, the down set, the up set.
-- ARGV, seven per symbol: price, venue_ts, recv_ms, status, source (the feed),
-- down_bound, up_bound.
-- Returns, two per symbol: members of down scored >= down_bound, members of
-- up scored <= up_bound.
local out = {}
for i = 0, #KEYS / 3 - 1 do
  local k, a = i * 3, i * 7
  redis.call('HSET', KEYS[k + 1], 'price', ARGV[a + 1], 'venue_ts', ARGV[a + 2],
             'recv_ms', ARGV[a + 3], 'status', ARGV[a + 4], 'source', ARGV[a + 5])
  out[#out + 1] = redis.call('ZRANGEBYSCORE', KEYS[k + 2], ARGV[a + 6], '+inf')
  out[#out + 1] = redis.call('ZRANGEBYSCORE', KEYS[k + 3], '-inf', ARGV[a + 7])
end
return out
