-- Record a batch of marks for operators and query the index at each of them,
-- in one call: one command per batch instead of three per symbol (the
-- client's per-command cost is what bounds ticks per second). The state of
-- the first candidates comes back with them, so that a tick crossing a few
-- members is decided after two round trips (this one and the commit), not
-- three.
--
-- KEYS, three per symbol: the mark hash, the down set, the up set.
-- ARGV[1] how many candidate accounts to return the state of; ARGV[2] and
-- ARGV[3] the key prefixes of account and positions hashes (the account
-- name follows them; every key shares the shard's hash slot); then eight
-- per symbol: price, venue_ts, recv_ms, status, source (the feed),
-- down_bound, up_bound, done_ts (the venue_ts of the symbol's last mark
-- whose decisions this shard has all committed; 0 for none: a worker taking
-- the shard over looks back at every mark after it).
-- Returns, two per symbol: members of down scored >= down_bound, members of
-- up scored <= up_bound; then one flat array: account, its account hash,
-- its positions hash (HGETALL arrays), for the first candidates in order.
local inline = tonumber(ARGV[1])
local acct_prefix, pos_prefix = ARGV[2], ARGV[3]
local out = {}
local seen, states = {}, {}
local function note(members)
  for _, m in ipairs(members) do
    local account = string.sub(m, 3)
    if inline > 0 and not seen[account] then
      seen[account] = true
      inline = inline - 1
      states[#states + 1] = account
      states[#states + 1] = redis.call('HGETALL', acct_prefix .. account)
      states[#states + 1] = redis.call('HGETALL', pos_prefix .. account)
    end
  end
end
for i = 0, #KEYS / 3 - 1 do
  local k, a = i * 3, 3 + i * 8
  redis.call('HSET', KEYS[k + 1], 'price', ARGV[a + 1], 'venue_ts', ARGV[a + 2],
             'recv_ms', ARGV[a + 3], 'status', ARGV[a + 4], 'source', ARGV[a + 5],
             'done_ts', ARGV[a + 8])
  local down = redis.call('ZRANGEBYSCORE', KEYS[k + 2], ARGV[a + 6], '+inf')
  local up = redis.call('ZRANGEBYSCORE', KEYS[k + 3], '-inf', ARGV[a + 7])
  note(down)
  note(up)
  out[#out + 1] = down
  out[#out + 1] = up
end
out[#out + 1] = states
return out
