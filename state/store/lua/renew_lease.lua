-- Renew a lease only if we still hold it: a compare-and-expire, so an
-- instance whose lease lapsed can never extend the new holder's lease.
-- KEYS[1] the lease; ARGV[1] the owner; ARGV[2] the new TTL in ms.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
