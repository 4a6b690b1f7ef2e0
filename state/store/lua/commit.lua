-- Commit guarded change sets, each atomically: every guard of a change set
-- is checked before anything of it is written, so a change is applied whole
-- or not at all. Many independent change sets travel in one call (a chunk of
-- a cascade): one command instead of one per account.
--
-- KEYS[1] routes the call (a key of the shard: every key a change set names
-- is in the shard's hash slot); ARGV, one per change set, its JSON object:
--   acct     the account hash (its version and seq are checked there);
--   version  expected account version ("0" for an account not yet written);
--            a mismatch means the caller decided on state that has changed
--            since (another instance's claim, an input update): CONFLICT.
--   seq      an input seq that must be newer than the stored one, else DUP
--            (and the entries are acknowledged: a replayed input is a no-op).
--   lease    [key, owner]: the input lease must still be ours (fencing a
--            paused instance whose lease lapsed and was taken over): LEASE.
--   pending  [key, group, id]: that input entry must still be pending in the
--            group; a commit retried after its answer was lost finds it
--            acknowledged by its first run: DONE, nothing written twice (a
--            dead letter has no other guard).
--   nx       [key, ttl]: the liquidation id must not exist yet: NX, with the
--            entry id of the event that made it. Written with the event's
--            entry id, in this same script as the XADD, so a retried or
--            repeated claim can never emit twice. Checked before the version:
--            the id names the version it was decided at, so a claim that
--            exists is this decision, made (its answer perhaps lost).
--   field    [key, field, value]: that hash field must hold value ("": be
--            absent), else FIELD (a warning's state moved on meanwhile).
--   ops      the writes, in order: ["hset", k, field, value], ["hdel", k, field],
--            ["zadd", k, score, member], ["zrem", k, member], ["sadd", k, member],
--            ["srem", k, member].
--   xadd     [key, [field, value, ...], maxlen?]: the event (or dead letter,
--            or warning) to append; with maxlen, the stream is trimmed to
--            about that many entries.
--   ack      [key, group, [id, ...]]: input entries to acknowledge.
--   set_seq  the account's last applied seq, stored.
--   bump     how much to add to the account version.
-- Returns one answer per change set: {outcome, version, entry id}, outcome
-- OK, DUP, CONFLICT, LEASE, DONE, NX, FIELD, or ERROR with what Redis refused (a key
-- of the wrong type written by hand; that change set stops there, the
-- others go on).

local function newer(a, b)
  -- Compare two non-negative integers written in decimal without leading zeros.
  if not b then return true end
  if #a ~= #b then return #a > #b end
  return a > b
end

local function commit(spec)
  local acct = spec.acct
  local function ack()
    if spec.ack then
      redis.call('XACK', spec.ack[1], spec.ack[2], unpack(spec.ack[3]))
    end
  end

  if spec.lease then
    if redis.call('GET', spec.lease[1]) ~= spec.lease[2] then
      return {'LEASE', ''}
    end
  end
  if spec.pending then
    local p = spec.pending
    if #redis.call('XPENDING', p[1], p[2], p[3], p[3], 1) == 0 then
      return {'DONE', ''}
    end
  end

  local version = redis.call('HGET', acct, 'version') or '0'
  if spec.seq then
    local stored = redis.call('HGET', acct, 'seq')
    if not newer(spec.seq, stored or false) then
      ack()
      return {'DUP', version}
    end
  end
  if spec.nx then
    local made = redis.call('GET', spec.nx[1])
    if made then
      return {'NX', version, made}
    end
  end
  if spec.version and spec.version ~= version then
    return {'CONFLICT', version}
  end
  if spec.field then
    local f = spec.field
    if (redis.call('HGET', f[1], f[2]) or '') ~= f[3] then
      return {'FIELD', version}
    end
  end

  for _, op in ipairs(spec.ops or {}) do
    local name = op[1]
    if name == 'hset' then
      redis.call('HSET', op[2], op[3], op[4])
    elseif name == 'hdel' then
      redis.call('HDEL', op[2], op[3])
    elseif name == 'zadd' then
      redis.call('ZADD', op[2], op[3], op[4])
    elseif name == 'zrem' then
      redis.call('ZREM', op[2], op[3])
    elseif name == 'sadd' then
      redis.call('SADD', op[2], op[3])
    elseif name == 'srem' then
      redis.call('SREM', op[2], op[3])
    else
      error('commit.lua: unknown op ' .. tostring(name))
    end
  end
  if spec.set_seq then
    redis.call('HSET', acct, 'seq', spec.set_seq)
  end
  if spec.bump then
    version = tostring(redis.call('HINCRBY', acct, 'version', spec.bump))
  end
  local entry = ''
  if spec.xadd then
    local x = spec.xadd
    if x[3] then
      entry = redis.call('XADD', x[1], 'MAXLEN', '~', x[3], '*', unpack(x[2]))
    else
      entry = redis.call('XADD', x[1], '*', unpack(x[2]))
    end
  end
  if spec.nx then
    redis.call('SET', spec.nx[1], entry, 'EX', spec.nx[2])
  end
  ack()
  return {'OK', version, entry}
end

local out = {}
for n = 1, #ARGV do
  local text = ARGV[n]
  local ok, answer = pcall(function() return commit(cjson.decode(text)) end)
  if ok then
    out[#out + 1] = answer
  else
    out[#out + 1] = {'ERROR', '', tostring(answer)}
  end
end
return out
