-- The gateway accepted the order: the reserved payment becomes waiting, due at its expiry.
-- KEYS: 1 payment record, 2 due zset, 3 the prefix of the bucket's listing indexes, 4 the
--       bucket's counts of the hour, 5 the prefix of the bucket's gateway references
-- ARGV: 1 now ms, 2 paymentUrl, 3 gatewayReference ('': none, left out of the record)
-- Returns the payment's hash after the call, flat (a racing create may have finalized it first).
local rec = read_record(KEYS[1])
if rec.status == CREATING then
  redis.call('HSET', KEYS[1], 'status', WAITING, 'updatedAt', ARGV[1])
  if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'paymentUrl', ARGV[2]) end
  if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'gatewayReference', ARGV[3]) end
  redis.call('HDEL', KEYS[1], 'creatingUntil')
  opened({payment = KEYS[1], due = KEYS[2], index = KEYS[3], stats = KEYS[4], refs = KEYS[5]},
    rec, ARGV[3], ARGV[1], CREATING)
end
return redis.call('HGETALL', KEYS[1])
