-- Drop the entries of a listing index whose records are gone (their retention ran out), among
-- the oldest created before a time. (A listing that meets such an entry drops it too.)
-- KEYS: 1 the index zset, 2 the prefix of the bucket's payment records (+ paymentId)
-- ARGV: 1 created before (ms), 2 how many entries to look at at most
-- Returns how many were dropped.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local dropped = 0
for _, id in ipairs(ids) do
  if redis.call('EXISTS', KEYS[2] .. id) == 0 then
    redis.call('ZREM', KEYS[1], id)
    dropped = dropped + 1
  end
end
return dropped
