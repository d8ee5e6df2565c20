-- The floor's create: the record hash and its due entry, in one call.
-- KEYS: 1 the record, 2 its bucket's due set. ARGV: 1 expiry (ms, the due score), 2 paymentId,
--       3… field, value pairs of the record
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
return 1
