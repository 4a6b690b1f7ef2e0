-- Delete the heartbeat only if this instance wrote it: with several instances
-- on one Redis, one stopping must not make the others look dead.
-- KEYS[1] the heartbeat; ARGV[1] the instance.
local beat = redis.call('GET', KEYS[1])
if beat and cjson.decode(beat).instance == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
