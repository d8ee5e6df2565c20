-- The gateway accepted the order: the reserved payment becomes waiting, due at its expiry.
-- KEYS: 1 payment record, 2 due zset
-- ARGV: 1 now ms, 2 paymentUrl, 3 gatewayReference, 4 paymentId
-- Returns the status after the call (a racing create may have finalized it first).
local found = redis.call('HMGET', KEYS[1], 'status', 'expiresAt')
if found[1] ~= CREATING then return found[1] end
redis.call('HSET', KEYS[1], 'status', WAITING, 'paymentUrl', ARGV[2], 'gatewayReference', ARGV[3],
  'updatedAt', ARGV[1])
redis.call('HDEL', KEYS[1], 'creatingUntil')
redis.call('ZADD', KEYS[2], found[2], ARGV[4])
return WAITING
