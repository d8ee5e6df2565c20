-- The gateway accepted the order: the reserved payment becomes waiting, due at its expiry.
-- KEYS: 1 payment record, 2 due zset, 3 the prefix of the bucket's listing indexes, 4 the
--       payment's timeline, 5 the bucket's counts of the hour, 6 the prefix of the bucket's
--       gateway references
-- ARGV: 1 now ms, 2 paymentUrl, 3 gatewayReference, 4 paymentId
-- Returns the status after the call (a racing create may have finalized it first).
local found = redis.call('HMGET', KEYS[1], 'status', 'expiresAt', 'client', 'createdAt', 'gateway')
if found[1] ~= CREATING then return found[1] end
redis.call('HSET', KEYS[1], 'status', WAITING, 'paymentUrl', ARGV[2], 'gatewayReference', ARGV[3],
  'updatedAt', ARGV[1])
redis.call('HDEL', KEYS[1], 'creatingUntil')
schedule(KEYS[2], found[2], ARGV[4], ARGV[1])
index_status(KEYS[3], {paymentId = ARGV[4], client = found[3], createdAt = found[4]}, CREATING, WAITING)
note(KEYS[4], KEYS[1], ARGV[1], {type = 'opened', gatewayReference = ARGV[3]})
tally(KEYS[5], 'opened:' .. found[5])
index_reference(KEYS[6], KEYS[1], ARGV[3], ARGV[4])
return WAITING
