-- The floor sweeper's claim: the first due entry of one bucket, moved to the end of its lease.
-- KEYS: 1 the bucket's due set. ARGV: 1 now (ms), 2 lease end (ms). Returns its paymentId or nothing.
local first = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)[1]
if not first then return false end
redis.call('ZADD', KEYS[1], ARGV[2], first)
return first
