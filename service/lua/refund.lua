-- Reserve a refund of a payment, or find the one that already answers its refundId. Atomic, so
-- concurrent refunds can never together refund more than was paid, and duplicates of one
-- refundId never make a second gateway refund. Refunds in flight count against what remains.
-- KEYS: 1 payment record, 2 its refunds index (refundId → refundNo), 3 the new refund's record,
--       4 refund due zset, 5 the prefix of the bucket's refund records (+ refundNo: a record's key),
--       6 the payment's timeline
-- ARGV: 1 now ms, 2 refundId, 3 new refundNo, 4 amount (minor; '' = what remains), 5 reason,
--       6 fingerprint, 7 the gateway's minimum (minor), 8 partial refunds allowed (1 | 0),
--       9 the gateway's most refunds per payment ('' = no limit), 10 the call's lease ms,
--       11 client (the payment must be this client's), 12 paymentId, 13 retention ms
-- Returns {outcome, refundNo or ''[, number]}: missing | existing (its refundNo) | conflict |
--         not_refundable (the payment's status as 2nd) | exhausted (nothing remains) |
--         over (remains, as 3rd) | below_minimum (minimum) | partial_refused | too_many (limit) |
--         new (its refundNo, its amount); only these last four carry a number
local now = tonumber(ARGV[1])
local payment = redis.call('HMGET', KEYS[1], 'status', 'client', 'amount', 'refundedAmount',
  'refundingAmount', 'currency', 'gateway', 'notifyKind')
if not payment[1] or payment[2] ~= ARGV[11] then return {'missing', ''} end

local known = redis.call('HGET', KEYS[2], ARGV[2])
if known then
  local fingerprint = redis.call('HGET', KEYS[5] .. known, 'fingerprint')
  if fingerprint ~= ARGV[6] then return {'conflict', known} end
  return {'existing', known}
end
if payment[1] ~= SUCCEEDED then return {'not_refundable', payment[1]} end

local total = tonumber(payment[3])
local remains = total - tonumber(payment[4] or '0') - tonumber(payment[5] or '0')
if remains <= 0 then return {'exhausted', ''} end
local amount = remains
if ARGV[4] ~= '' then amount = tonumber(ARGV[4]) end
if amount > remains then return {'over', '', remains} end
if amount < tonumber(ARGV[7]) then return {'below_minimum', '', tonumber(ARGV[7])} end
if ARGV[8] ~= '1' and amount ~= total then return {'partial_refused', ''} end
local count = redis.call('HLEN', KEYS[2])
if ARGV[9] ~= '' and count >= tonumber(ARGV[9]) then return {'too_many', '', tonumber(ARGV[9])} end

local lease_until = string.format('%d', now + tonumber(ARGV[10]))
redis.call('HSET', KEYS[3], 'refundNo', ARGV[3], 'refundId', ARGV[2], 'paymentId', ARGV[12],
  'client', ARGV[11], 'gateway', payment[7], 'amount', string.format('%d', amount),
  'currency', payment[6], 'fingerprint', ARGV[6], 'status', REFUND_PROCESSING, 'version', '0',
  'createdAt', ARGV[1], 'updatedAt', ARGV[1], 'callingUntil', lease_until, 'sequence', count + 1)
if ARGV[5] ~= '' then redis.call('HSET', KEYS[3], 'reason', ARGV[5]) end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('HINCRBY', KEYS[1], 'refundingAmount', amount)
-- due at the end of the call's lease: should the call never end (the process died), the refund
-- sweep asks the gateway what became of it
schedule(KEYS[4], lease_until, ARGV[3], now)
-- a refunded payment and its refunds are kept the retention from its newest refund
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[13]) end
note(KEYS[6], KEYS[1], ARGV[1], {type = 'refund', outcome = 'requested', refundId = ARGV[2],
  refundNo = ARGV[3], status = REFUND_PROCESSING, amount = string.format('%d', amount), reason = ARGV[5] ~= '' and ARGV[5] or nil})
return {'new', ARGV[3], amount}
