-- The gateway refused the order: forget the reserved payment as if it never was, and point the
-- transaction back at the payment before it (whose lifetime the index entry takes again).
-- KEYS: 1 payment record, 2 txn index, 3 due zset, 4 the prefix of the bucket's payment records,
--       5 the prefix of the bucket's listing indexes, 6 the payment's timeline
-- ARGV: 1 paymentId
local found = redis.call('HMGET', KEYS[1], 'status', 'previous', 'client')
if found[1] ~= CREATING then return 0 end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  local previous = found[2]
  if previous and previous ~= '' then
    redis.call('SET', KEYS[2], previous)
    local ttl = redis.call('PTTL', KEYS[4] .. previous)
    if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
  else
    redis.call('DEL', KEYS[2])
  end
end
redis.call('DEL', KEYS[1], KEYS[6])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[5] .. 'all:' .. found[3], ARGV[1])
index_status(KEYS[5], {paymentId = ARGV[1], client = found[3]}, CREATING, nil)
return 1
