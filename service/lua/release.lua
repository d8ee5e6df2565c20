-- A create's gateway call failed without a clear answer (timeout, outage, nonsense): give the
-- lease back, keeping the paymentId (the gateway's idempotency key), so that the next duplicate
-- resumes at once, and have the sweeper ask the gateway soon if none comes.
-- KEYS: 1 payment record, 2 due zset, 3 the payment's timeline
-- ARGV: 1 paymentId, 2 when the sweeper should look (ms), 3 now ms, 4 what went wrong
if redis.call('HGET', KEYS[1], 'status') ~= CREATING then return 0 end
redis.call('HSET', KEYS[1], 'creatingUntil', '0')
schedule(KEYS[2], ARGV[2], ARGV[1], ARGV[3])
note(KEYS[3], KEYS[1], ARGV[3], {type = 'unclear', detail = ARGV[4]})
return 1
