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

-- the record at key, to apply the word of gateway about it: nil and the script's answer when it
-- is not there, is another gateway's, or the webhook event (mark, ttl) was applied before
local function record_for(key, gateway, mark, ttl)
  local rec, found = read_record(key)
  if not found then return nil, {'missing', '', '0'} end
  if rec.gateway ~= gateway then return nil, {'foreign', rec.status, rec.version} end
  if seen_event(mark, ttl) then return nil, {'duplicate', rec.status, rec.version} end
  return rec
end

-- a notification of rec's change (rec as of the change is its snapshot), due now, in the outbox
-- and the payment's list of deliveries, kept the retention
local function queue_delivery(key, outbox, list, retention, id, rec, kind, url, kind_of_change, now)
  redis.call('HSET', key, 'id', id, 'paymentId', rec.paymentId, 'kind', kind, 'url', url,
    'type', kind_of_change, 'version', rec.version, 'createdAt', now,
    'snapshot', cjson.encode(rec), 'attempts', '0', 'state', 'pending', 'nextAt', now)
  redis.call('PEXPIRE', key, retention)
  redis.call('ZADD', outbox, now, id)
  redis.call('RPUSH', list, id)
  redis.call('PEXPIRE', list, retention)
end
