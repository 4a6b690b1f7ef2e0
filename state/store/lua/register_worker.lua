-- Register (or refresh) a worker sharing the shards; return every live worker.
-- Scores are expiry times on Redis's own clock, so workers on hosts whose
-- clocks disagree still agree on who is alive.
-- KEYS[1] the workers zset; ARGV[1] the worker; ARGV[2] its TTL in ms.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
