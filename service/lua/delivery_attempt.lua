-- One attempt to deliver a notification: its outcome on the delivery, in the dead set when it is
-- given up, in the payment's timeline and in the hour's counts, in one write.
-- KEYS: 1 the delivery's hash, 2 the bucket's dead set, 3 the payment record, 4 the payment's
--       timeline, 5 the bucket's counts of the hour
-- ARGV: 1 now ms, 2 outcome (delivered | failed | dead), 3 what the receiver answered (or why
--       not), 4 how many fields to delete (n), 5 … 4+n their names, then field, value pairs to set
local n = tonumber(ARGV[4])
if n > 0 then redis.call('HDEL', KEYS[1], unpack(ARGV, 5, 4 + n)) end
redis.call('HSET', KEYS[1], unpack(ARGV, 5 + n))
local delivery = redis.call('HMGET', KEYS[1], 'id', 'type', 'attempts')
if ARGV[2] == 'dead' then redis.call('ZADD', KEYS[2], ARGV[1], delivery[1]) end
note(KEYS[4], KEYS[3], ARGV[1], {type = 'delivery', deliveryId = delivery[1], notification = delivery[2],
  outcome = ARGV[2], answer = ARGV[3], attempt = delivery[3]})
tally(KEYS[5], 'delivery:' .. ARGV[2])
return 1
