-- Apply the gateway's word about one payment, atomically, by DESIGN.md's rules:
-- forward only; final is final, except closed → succeeded on verified evidence (latePayment);
-- an amount or currency that differs from the payment's flags integrityError and moves nothing.
-- A transition, its due-set update and its notification (outbox) are one write.
-- KEYS: 1 payment record, 2 due zset, 3 outbox zset, 4 webhook event mark (or the record itself),
--       5 the new delivery's hash, 6 the payment's list of deliveries, 7 the prefix of the
--       bucket's transaction index (+ client .. ':' .. transactionId: the payment's entry),
--       8 the prefix of the bucket's listing indexes, 9 the payment's timeline, 10 the bucket's
--       counts of the hour, 11 the prefix of the bucket's gateway references
-- ARGV: 1 now ms, 2 target status ('' = none), 3 gateway state, 4 gateway reference ('' = none),
--       5 amount seen (minor, '' = none), 6 currency seen, 7 failure reason,
--       8 event mark TTL s ('' = no mark), 9 retention ms, 10 next sync ms (for processing),
--       11 id of the new delivery, 12 the gateway whose word this is, 13 where the word came from
--       (webhook | sync | sweep | close | create | recovery), 14 when its webhook arrived (ms;
--       '' = not a webhook), 15 '1': answer the record too
-- Every outcome but missing is noted in the payment's timeline.
-- A payment that ends final leaves its due set, and the sweeper's claim on it ends with it.
-- Returns {outcome, status before, version}, and when asked (ARGV 15) the record as the script
--         leaves it (HGETALL's list) after those; outcome: missing | foreign (another gateway's
--         payment: nothing changes) | duplicate | mismatch (about another gateway object than the
--         stored reference: nothing changes) | integrity | unchanged | stale | transitioned | late
local now = ARGV[1]
local target = ARGV[2]

local source = ARGV[13]
local function noted(entry)
  entry.source, entry.gatewayState = source, ARGV[3]
  note(KEYS[9], KEYS[1], now, entry)
end
local function ignored(outcome, more)
  local entry = more or {}
  entry.type, entry.outcome, entry.said = 'ignored', outcome, target
  noted(entry)
end
local rec, refused = record_for(KEYS[1], ARGV[12], KEYS[4], ARGV[8])
if not rec then
  if refused[1] == 'foreign' then ignored('foreign', {gateway = ARGV[12]}) end
  if refused[1] == 'duplicate' then ignored('duplicate') end
  return refused
end
local current = rec.status
local function answer(outcome)
  if ARGV[15] ~= '1' then return {outcome, current, rec.version} end
  local flat = {}
  for field, value in pairs(rec) do
    flat[#flat + 1] = field
    flat[#flat + 1] = value
  end
  return {outcome, current, rec.version, flat}
end
local function mark_event() mark_event_seen(KEYS[4], ARGV[8]) end
if ARGV[14] ~= '' then  -- the webhook's time from its arrival to here, for the console's chart
  local took = tonumber(now) - tonumber(ARGV[14])
  tally(KEYS[10], 'applied:n')
  tally(KEYS[10], 'applied:ms', took)
  for _, le in ipairs({10, 50, 250, 1000}) do
    if took <= le then tally(KEYS[10], 'applied:le:' .. le) end
  end
end
-- evidence about another gateway object (another session, trade, transaction) than the one
-- stored for this payment says nothing about it: before anything else, nothing changes
local stored_reference = rec.gatewayReference or ''
if ARGV[4] ~= '' and stored_reference ~= '' and ARGV[4] ~= stored_reference then
  mark_event()
  ignored('mismatch', {reference = ARGV[4]})
  return answer('mismatch')
end
if ARGV[5] ~= '' and (ARGV[5] ~= rec.amount or ARGV[6] ~= rec.currency) then
  redis.call('HSET', KEYS[1], 'integrityError', '1', 'updatedAt', now)
  rec.integrityError, rec.updatedAt = '1', now
  index_flag(KEYS[8], rec, 'integrityError')
  mark_event()
  noted({type = 'integrity', amount = ARGV[5], currency = ARGV[6]})
  return answer('integrity')
end
if ARGV[4] ~= '' and stored_reference == '' then
  redis.call('HSET', KEYS[1], 'gatewayReference', ARGV[4])
  rec.gatewayReference = ARGV[4]
  index_reference(KEYS[11], KEYS[1], ARGV[4], rec.paymentId)
end

local outcome = 'transitioned'
if target == '' or target == current then
  mark_event()
  ignored('unchanged')
  return answer('unchanged')
elseif not MOVES[current][target] then
  mark_event()
  ignored('stale')
  return answer('stale')
elseif FINAL[current] then  -- the one move out of a final state: paid after it was closed
  outcome = 'late'
end

local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'status', target, 'updatedAt', now, 'gatewayState', ARGV[3])
rec.status, rec.updatedAt, rec.gatewayState = target, now, ARGV[3]
rec.version = string.format('%d', version)
if target == SUCCEEDED then
  redis.call('HSET', KEYS[1], 'paidAt', now)
  rec.paidAt = now
end
if target == FAILED and ARGV[7] ~= '' then
  redis.call('HSET', KEYS[1], 'failureReason', ARGV[7])
  rec.failureReason = ARGV[7]
end
if outcome == 'late' then
  redis.call('HSET', KEYS[1], 'latePayment', '1')
  rec.latePayment = '1'
  index_flag(KEYS[8], rec, 'latePayment')
end
index_status(KEYS[8], rec, current, target)
tally(KEYS[10], 'status:' .. target .. ':' .. rec.gateway)
redis.call('HDEL', KEYS[1], 'creatingUntil')
rec.creatingUntil = nil

local retention = tonumber(ARGV[9])
if FINAL[target] then
  redis.call('ZREM', KEYS[2], rec.paymentId)
  redis.call('HDEL', KEYS[1], 'claim')
  rec.claim = nil
  redis.call('PEXPIRE', KEYS[1], retention)
  local index = KEYS[7] .. rec.client .. ':' .. rec.transactionId
  if redis.call('GET', index) == rec.paymentId then redis.call('PEXPIRE', index, retention) end
  if (rec.gatewayReference or '') ~= '' then keep_with(KEYS[11] .. rec.gatewayReference, KEYS[1]) end
else
  schedule(KEYS[2], ARGV[10], rec.paymentId, now)
end

local url = rec.notifyUrl
local kind = rec.notifyKind or NOTIFY_DEFAULT
local notify_on = NOTIFY[kind]
if url and url ~= '' and notify_on and notify_on[target] then
  queue_delivery(KEYS[5], KEYS[3], KEYS[6], retention, ARGV[11], rec, kind, url,
    'transaction.' .. target, now)
end
mark_event()
noted({type = 'transition', from = current, to = target, late = outcome == 'late' and '1' or nil,
  reason = ARGV[7] ~= '' and ARGV[7] or nil})
return answer(outcome)
