-- Write the data-generation marker (state/store/generation.py), atomically:
-- two daemons and an operator may race, and must agree on one marker.
-- KEYS[1] the marker; ARGV[1] the operation; ARGV[2] what the caller expects;
-- ARGV[3] the marker to write if the operation writes (JSON).
--   create  write ARGV[3] only if there is no marker.
--   lost    the caller saw generation ARGV[2] and finds it gone: write ARGV[3]
--           (acknowledged false, lost ARGV[2]) if there is no marker or the
--           marker is another acknowledged generation; a marker already
--           saying "not acknowledged" is kept (someone noticed first).
--   ack     acknowledge: if the marker's id is still ARGV[2], set
--           acknowledged true and acknowledged_ms (from ARGV[3]); with no
--           marker at all (and ARGV[2] empty), write ARGV[3].
-- Returns the marker as it stands afterwards.
local key, op, expect, new = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local raw = redis.call('GET', key)
if op == 'create' then
  if not raw then
    redis.call('SET', key, new)
    return new
  end
  return raw
end
if op == 'lost' then
  if not raw then
    redis.call('SET', key, new)
    return new
  end
  local current = cjson.decode(raw)
  if current.acknowledged and current.id ~= expect then
    redis.call('SET', key, new)
    return new
  end
  return raw
end
if op == 'ack' then
  if not raw then
    if expect == '' then
      redis.call('SET', key, new)
      return new
    end
    return redis.error_reply('generation.lua: the marker vanished; run the command again')
  end
  local current = cjson.decode(raw)
  if current.id ~= expect then
    return redis.error_reply('generation.lua: the marker changed meanwhile; run the command again')
  end
  current.acknowledged = true
  current.acknowledged_ms = cjson.decode(new).acknowledged_ms
  raw = cjson.encode(current)
  redis.call('SET', key, raw)
  return raw
end
return redis.error_reply('generation.lua: unknown operation ' .. tostring(op))
