-- The floor sweeper's mark: the payment the gateway closed is closed, leaves the due set, and its
-- notification is queued, in one call. KEYS: 1 the record, 2 its bucket's due set, 3 the bucket's
-- floor outbox, 4 the delivery's hash. ARGV: 1 now (ms), 2 paymentId, 3 deliveryId.
-- Returns the record as it is now (its HGETALL: what the notification tells).
redis.call('HSET', KEYS[1], 'status', 'closed', 'updatedAt', ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[4], 'paymentId', ARGV[2], 'state', 'pending', 'createdAt', ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[3])
return redis.call('HGETALL', KEYS[1])
