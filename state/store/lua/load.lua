-- Read several accounts in one call: both hashes of each, in the order asked.
-- One command per chunk instead of two per account: the client's per-command
-- cost (packing, parsing) is what bounds reading a cascade's candidates.
-- KEYS, two per account: the account hash, the positions hash.
-- Returns, two per account: the flat field/value arrays of HGETALL.
local out = {}
for i = 1, #KEYS do
  out[i] = redis.call('HGETALL', KEYS[i])
end
return out
