-- Read several accounts in one call: both hashes of each, in the order asked.
-- One command, one argument per account: the client's per-command and
-- per-argument cost is what bounds reading a cascade's candidates.
-- KEYS[1] routes the call (a key of the shard; every account's keys share
-- its hash slot). ARGV[1] and ARGV[2] are the key prefixes of account and
-- positions hashes; ARGV[3..] the account names.
-- Returns, two per account: the flat field/value arrays of HGETALL.
local acct_prefix, pos_prefix = ARGV[1], ARGV[2]
local out = {}
for i = 3, #ARGV do
  out[#out + 1] = redis.call('HGETALL', acct_prefix .. ARGV[i])
  out[#out + 1] = redis.call('HGETALL', pos_prefix .. ARGV[i])
end
return out
