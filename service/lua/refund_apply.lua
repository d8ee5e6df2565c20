-- Apply the gateway's word about one refund, atomically, by states.REFUND_MOVES: processing →
-- succeeded | failed; succeeded → failed on verified evidence (a refund returned later). The
-- payment's sums move with it, and the storage app's notification is queued, in the same write.
-- KEYS: 1 refund record, 2 payment record, 3 refund due zset, 4 outbox zset, 5 webhook event mark
--       (or the refund record itself), 6 the new delivery's hash, 7 the payment's list of deliveries,
--       8 the payment's timeline, 9 the prefix of the bucket's listing indexes
-- ARGV: 1 now ms, 2 status, 3 gateway state, 4 gateway reference ('' = none), 5 failure reason,
--       6 event mark TTL s ('' = no mark), 7 retention ms, 8 id of the new delivery,
--       9 the gateway whose word this is, 10 next look ms (while processing), 11 amount seen
--       (minor, '' = none), 12 where the word came from (webhook | refund | resend | sync)
-- Every outcome but missing and foreign is noted in the payment's timeline.
-- Returns {outcome, status before, version}; outcome: missing | foreign | duplicate | integrity |
--         unchanged | stale | transitioned
local now = ARGV[1]
local target = ARGV[2]
local function noted(entry, refund)
  entry.type, entry.refundId, entry.refundNo = 'refund', refund.refundId, refund.refundNo
  entry.source, entry.gatewayState = ARGV[12], ARGV[3]
  note(KEYS[8], KEYS[2], now, entry)
end
local rec, refused, seen = record_for(KEYS[1], ARGV[9], KEYS[5], ARGV[6])
if not rec then
  if refused[1] == 'duplicate' then noted({outcome = 'duplicate', said = target}, seen) end
  return refused
end
local current = rec.status
local function mark_event() mark_event_seen(KEYS[5], ARGV[6]) end
local function ignored(outcome, more)
  local entry = more or {}
  entry.outcome, entry.said = outcome, target
  noted(entry, rec)
end
if ARGV[11] ~= '' and ARGV[11] ~= rec.amount then
  redis.call('HSET', KEYS[1], 'integrityError', '1', 'updatedAt', now)
  mark_event()
  ignored('integrity', {amountSeen = ARGV[11]})
  return {'integrity', current, rec.version}
end
if ARGV[4] ~= '' and (rec.gatewayReference or '') == '' then
  redis.call('HSET', KEYS[1], 'gatewayReference', ARGV[4])
  rec.gatewayReference = ARGV[4]
end
if target == current then
  redis.call('HDEL', KEYS[1], 'callingUntil')
  if current == REFUND_PROCESSING then schedule(KEYS[3], ARGV[10], rec.refundNo, now) end
  mark_event()
  ignored('unchanged')
  return {'unchanged', current, rec.version}
elseif not REFUND_MOVES[current][target] then
  mark_event()
  ignored('stale')
  return {'stale', current, rec.version}
end

local amount = tonumber(rec.amount)
if current == REFUND_PROCESSING then redis.call('HINCRBY', KEYS[2], 'refundingAmount', -amount) end
local refunded = nil
if current == REFUND_SUCCEEDED then refunded = redis.call('HINCRBY', KEYS[2], 'refundedAmount', -amount) end
if target == REFUND_SUCCEEDED then refunded = redis.call('HINCRBY', KEYS[2], 'refundedAmount', amount) end
if refunded then  -- the payment is flagged refunded while any of its money is back with the customer
  local payment = redis.call('HMGET', KEYS[2], 'client', 'createdAt')
  local indexed = {paymentId = rec.paymentId, client = payment[1], createdAt = payment[2]}
  index_flag(KEYS[9], indexed, 'refunded', refunded <= 0)
end

local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'status', target, 'updatedAt', now, 'gatewayState', ARGV[3])
redis.call('HDEL', KEYS[1], 'callingUntil')
rec.status, rec.updatedAt, rec.gatewayState, rec.callingUntil = target, now, ARGV[3], nil
rec.version = string.format('%d', version)
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[1], 'failureReason', ARGV[5])
  rec.failureReason = ARGV[5]
end
redis.call('ZREM', KEYS[3], rec.refundNo)

local payment = redis.call('HMGET', KEYS[2], 'notifyUrl', 'notifyKind')
local url, kind = payment[1], payment[2] or NOTIFY_DEFAULT
local notify_on = REFUND_NOTIFY[kind]
if url and url ~= '' and notify_on and notify_on[target] then
  queue_delivery(KEYS[6], KEYS[4], KEYS[7], ARGV[7], ARGV[8], rec, kind, url, 'refund.' .. target, now)
end
mark_event()
noted({outcome = 'transitioned', from = current, status = target, amount = rec.amount,
  reason = ARGV[5] ~= '' and ARGV[5] or nil}, rec)
return {'transitioned', current, rec.version}
