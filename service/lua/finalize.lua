-- The gateway accepted the order: the reserved payment becomes waiting.
-- KEYS: 1 payment record
-- ARGV: 1 now ms, 2 paymentUrl, 3 gatewayReference
-- Returns the status after the call (a racing create may have finalized it first).
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'creating' then return status end
redis.call('HSET', KEYS[1], 'status', 'waiting', 'paymentUrl', ARGV[2], 'gatewayReference', ARGV[3],
  'updatedAt', ARGV[1])
redis.call('HDEL', KEYS[1], 'creatingUntil')
return 'waiting'
