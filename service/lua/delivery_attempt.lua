-- One attempt to deliver a notification: its outcome on the delivery, in the dead set when it is
-- given up, in the payment's timeline and in the hour's counts, and the end of the sender's claim
-- (the next attempt scheduled, or the delivery out of the outbox), in one write.
-- KEYS: 1 the delivery's hash, 2 the bucket's dead set, 3 the payment record, 4 the payment's
--       timeline, 5 the bucket's counts of the hour, 6 the bucket's outbox
-- ARGV: 1 now ms, 2 outcome (delivered | failed | dead), 3 what the receiver answered (or why
--       not), 4 the sender's claim token, 5 when to try again (ms; '' = done), 6 how many fields to
--       delete (n), 7 … 6+n their names, then field, value pairs to set
-- Returns 1 when the claim was still the sender's (else its lease ran out and another sender
-- holds the delivery: the attempt is recorded all the same, the schedule is the other's).
local n = tonumber(ARGV[6])
if n > 0 then redis.call('HDEL', KEYS[1], unpack(ARGV, 7, 6 + n)) end
redis.call('HSET', KEYS[1], unpack(ARGV, 7 + n))
local delivery = redis.call('HMGET', KEYS[1], 'id', 'type', 'attempts', 'claim')
if ARGV[2] == 'dead' then redis.call('ZADD', KEYS[2], ARGV[1], delivery[1]) end
note(KEYS[4], KEYS[3], ARGV[1], {type = 'delivery', deliveryId = delivery[1], notification = delivery[2],
  outcome = ARGV[2], answer = ARGV[3], attempt = delivery[3]})
tally(KEYS[5], 'delivery:' .. ARGV[2])
if delivery[4] ~= ARGV[4] then return 0 end
redis.call('HDEL', KEYS[1], 'claim')
if ARGV[5] == '' then
  redis.call('ZREM', KEYS[6], delivery[1])
else
  redis.call('ZADD', KEYS[6], ARGV[5], delivery[1])
end
return 1
