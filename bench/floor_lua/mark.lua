-- The floor sweeper's mark: the payment the gateway closed is closed, and leaves the due set.
-- KEYS: 1 the record, 2 its bucket's due set. ARGV: 1 now (ms), 2 paymentId
redis.call('HSET', KEYS[1], 'status', 'closed', 'updatedAt', ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
