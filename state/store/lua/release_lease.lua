-- Delete a lease only if it is still ours (compare-and-delete): a lease that
-- lapsed and was taken over must stay with its new holder.
-- KEYS[1] the lease; ARGV[1] the owner.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
