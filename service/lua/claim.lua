-- Claim what is due in one bucket's schedule (due set or outbox) with a lease: the entry's score
-- moves to the lease's end, so a crashed claimer's entries fall due again by themselves.
-- KEYS: 1 the schedule zset
-- ARGV: 1 now ms, 2 lease ms, 3 how many at most, 4 key prefix of the entries' hashes, 5 claim token
-- Returns {id, its hash (flat field, value list, the claim included)} of each claimed entry, so
-- that its handler needs no read of its own. Entries whose hash is gone (retention) are dropped.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local lease_end = string.format('%d', tonumber(ARGV[1]) + tonumber(ARGV[2]))
local claimed = {}
for _, id in ipairs(ids) do
  local key = ARGV[4] .. id
  if redis.call('EXISTS', key) == 1 then
    redis.call('ZADD', KEYS[1], lease_end, id)
    redis.call('HSET', key, 'claim', ARGV[5])
    claimed[#claimed + 1] = {id, redis.call('HGETALL', key)}
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return claimed
