-- End a claim: schedule the entry's next look, or drop it when its hash says it is done.
-- Only the current claim holder may do this (a claim that outlived its lease was taken over).
-- KEYS: 1 the schedule zset, 2 the entry's hash
-- ARGV: 1 entry id, 2 claim token, 3 next score ms ('' = drop), 4 hash field telling it is done,
--       5… values of that field that mean done
-- Returns 1 when the claim was ours.
if redis.call('HGET', KEYS[2], 'claim') ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[2], 'claim')
local state = redis.call('HGET', KEYS[2], ARGV[4])
local done = ARGV[3] == ''
for i = 5, #ARGV do
  if state == ARGV[i] then done = true end
end
if done then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
return 1
