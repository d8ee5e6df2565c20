-- The floor's webhook: a waiting payment becomes succeeded and its notification is queued, in
-- one call. KEYS: 1 the record, 2 its bucket's due set, 3 the bucket's floor outbox, 4 its delivery hash.
-- ARGV: 1 now (ms), 2 paymentId, 3 deliveryId. Returns the record as it is now (its HGETALL),
-- or nothing when the payment was not waiting (a repeated webhook: nothing to notify).
if redis.call('HGET', KEYS[1], 'status') ~= 'waiting' then return false end
redis.call('HSET', KEYS[1], 'status', 'succeeded', 'updatedAt', ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[4], 'paymentId', ARGV[2], 'state', 'pending', 'createdAt', ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[3])
return redis.call('HGETALL', KEYS[1])
