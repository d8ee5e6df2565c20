-- What the scripts share (service.store.load_script puts it before each, after the state tables):
-- reading a record whole, a webhook's dedupe mark, and queueing a notification of a change.

-- the hash at key as a table (field → value), and whether it exists
local function read_record(key)
  local rec = {}
  local flat = redis.call('HGETALL', key)
  for i = 1, #flat, 2 do rec[flat[i]] = flat[i + 1] end
  return rec, #flat > 0
end

-- a webhook event seen before (ttl '' = not a webhook: never)
local function seen_event(mark, ttl)
  return ttl ~= '' and redis.call('EXISTS', mark) == 1
end

local function mark_event_seen(mark, ttl)
  if ttl ~= '' then redis.call('SET', mark, '1', 'EX', ttl) end
end

-- the record at key, to apply the word of gateway about it: nil, the script's answer and the
-- record as read when it is not there, is another gateway's, or the webhook event (mark, ttl)
-- was applied before
local function record_for(key, gateway, mark, ttl)
  local rec, found = read_record(key)
  if not found then return nil, {'missing', '', '0'}, rec end
  rec.version = rec.version or '0'  -- a payment keeps none until its first move
  if rec.gateway ~= gateway then return nil, {'foreign', rec.status, rec.version}, rec end
  if seen_event(mark, ttl) then return nil, {'duplicate', rec.status, rec.version}, rec end
  return rec
end

-- id due at score (ms) in a schedule (a due set, an outbox, a refund due set). Idle workers sleep
-- until the soonest entry they saw, WAKE_HORIZON_MS at most (service.workers): an entry due
-- sooner than that wakes them, by its score on its schedule's channel (service.keys.wake).
local function schedule(zset, score, id, now)
  redis.call('ZADD', zset, score, id)
  if tonumber(score) <= tonumber(now) + WAKE_HORIZON_MS then
    redis.call('PUBLISH', WAKE_PREFIX .. string.match(zset, '[^:]+$'), score)
  end
end

-- a notification of rec's change (rec as of the change is its snapshot), due now, in the outbox
-- and the payment's list of deliveries, kept the retention
local function queue_delivery(key, outbox, list, retention, id, rec, kind, url, kind_of_change, now)
  redis.call('HSET', key, 'id', id, 'paymentId', rec.paymentId, 'kind', kind, 'url', url,
    'type', kind_of_change, 'version', rec.version, 'createdAt', now,
    'snapshot', cjson.encode(rec), 'attempts', '0', 'state', 'pending', 'nextAt', now)
  redis.call('PEXPIRE', key, retention)
  schedule(outbox, now, id, now)
  redis.call('RPUSH', list, id)
  redis.call('PEXPIRE', list, retention)
end

-- key lives as long as the payment at payment_key (from the payment's retention on; no TTL before)
local function keep_with(key, payment_key)
  local ttl = redis.call('PTTL', payment_key)
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
end

-- whether two timeline entries say the same but for when (and how many times)
local function same_but_time(a, b)
  for name, value in pairs(a) do
    if name ~= 'at' and name ~= 'count' and b[name] ~= value then return false end
  end
  for name in pairs(b) do
    if name ~= 'at' and name ~= 'count' and a[name] == nil then return false end
  end
  return true
end

-- one entry (a table of strings; 'type' says what happened) at the end of the payment's timeline,
-- which keeps its newest TIMELINE_MAX entries, as long as the payment. An entry that says what
-- the last one says (a retried webhook, a sync that changed nothing again) counts in that one.
local function note(events, payment_key, now, entry)
  local last = redis.call('LINDEX', events, -1)
  local before = last and cjson.decode(last)
  entry.at = now
  if before and same_but_time(entry, before) then
    entry.count = string.format('%d', tonumber(before.count or '1') + 1)
    redis.call('LSET', events, -1, cjson.encode(entry))
  else
    redis.call('RPUSH', events, cjson.encode(entry))
    redis.call('LTRIM', events, -TIMELINE_MAX, -1)
  end
  keep_with(events, payment_key)
end

-- one more of field in the bucket's counts of the hour (the console's charts)
local function tally(stats, field, by)
  redis.call('HINCRBY', stats, field, by or 1)
  redis.call('EXPIRE', stats, STATS_TTL)
end

-- the listing's indexes (service.keys.index under prefix): a payment is in its client's index
-- of all and in that of its status, scored by its createdAt; from/to: the status it leaves/takes
local function index_status(prefix, rec, from, to)
  local id = rec.paymentId
  if from then redis.call('ZREM', prefix .. 'status:' .. from .. ':' .. rec.client, id) end
  if to then redis.call('ZADD', prefix .. 'status:' .. to .. ':' .. rec.client, rec.createdAt, id) end
end

-- a flag (latePayment, integrityError, refunded) raised on the payment, or lowered
local function index_flag(prefix, rec, flag, lowered)
  local key = prefix .. 'flag:' .. flag .. ':' .. rec.client
  if lowered then
    redis.call('ZREM', key, rec.paymentId)
  else
    redis.call('ZADD', key, rec.createdAt, rec.paymentId)
  end
end

-- the gateway's reference for the payment at payment_key, findable (service.listing's search)
local function index_reference(prefix, payment_key, reference, payment_id)
  if reference == '' then return end
  redis.call('SET', prefix .. reference, payment_id)
  keep_with(prefix .. reference, payment_key)
end

-- the gateway took the order of the payment rec (its fields; at keys k: payment, due, index,
-- stats, refs): it is waiting since now (openedAt: the timeline reads its created and opened
-- entries from the record, so a waiting payment has no timeline key), due at its expiry, in the
-- index of waiting payments (out of that of from, the status it leaves), its gateway reference
-- findable, and counted
local function opened(k, rec, reference, now, from)
  redis.call('HSET', k.payment, 'openedAt', now)
  schedule(k.due, rec.expiresAt, rec.paymentId, now)
  index_status(k.index, rec, from, WAITING)
  tally(k.stats, 'opened:' .. rec.gateway)
  index_reference(k.refs, k.payment, reference, rec.paymentId)
end
