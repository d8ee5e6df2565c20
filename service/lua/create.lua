-- Reserve a new payment for (client, transactionId), or find the one that already answers it.
-- Atomic, so concurrent duplicates can never open two gateway orders.
-- KEYS: 1 txn index, 2 the new payment's record, 3 due zset, 4 the prefix of the bucket's payment
--       records (+ paymentId: a record's key), 5 the prefix of the bucket's listing indexes,
--       6 the bucket's counts of the hour, 7 the prefix of the bucket's gateway references (all
--       in one bucket)
-- ARGV: 1 now ms, 2 request fingerprint, 3 new paymentId, 4 creating lease ms, 5 '1' when the
--       new payment is opened already (its gateway's create makes no call: the record is
--       waiting, with its paymentUrl), 6… field, value pairs of the new record
-- Returns {outcome, paymentId}: new | existing | conflict | wait (another create holds it) |
--         resume (the holder's lease ran out: the caller takes the create over, same paymentId)
-- A creating payment is due at the end of its lease: should its create never finish (the
-- process died, the gateway never answered), the sweeper then asks the gateway what it made.
local now = tonumber(ARGV[1])
local lease_until = string.format('%d', now + tonumber(ARGV[4]))
local current = redis.call('GET', KEYS[1])
if current then
  local key = KEYS[4] .. current
  local found = redis.call('HMGET', key, 'status', 'fingerprint', 'creatingUntil')
  local status = found[1]
  if status and not REISSUE[status] then
    -- a prefix: records of before stored the whole digest, whose first half is the fingerprint now
    if string.sub(found[2] or '', 1, #ARGV[2]) ~= ARGV[2] then return {'conflict', current} end
    if status ~= CREATING then return {'existing', current} end
    if tonumber(found[3]) > now then return {'wait', current} end
    redis.call('HSET', key, 'creatingUntil', lease_until)
    schedule(KEYS[3], lease_until, current, now)
    return {'resume', current}
  end
end
local record, rec = {}, {}
for i = 6, #ARGV do record[#record + 1] = ARGV[i] end
for i = 6, #ARGV, 2 do rec[ARGV[i]] = ARGV[i + 1] end
redis.call('HSET', KEYS[2], unpack(record))
redis.call('HSET', KEYS[2], 'fingerprint', ARGV[2])
if current then redis.call('HSET', KEYS[2], 'previous', current) end
redis.call('SET', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[5] .. 'all:' .. rec.client, rec.createdAt, ARGV[3])
if ARGV[5] == '1' then
  opened({payment = KEYS[2], due = KEYS[3], index = KEYS[5], stats = KEYS[6], refs = KEYS[7]},
    rec, rec.gatewayReference or '', now, nil)
else
  redis.call('HSET', KEYS[2], 'status', CREATING, 'creatingUntil', lease_until)
  schedule(KEYS[3], lease_until, ARGV[3], now)
  index_status(KEYS[5], rec, nil, CREATING)
end
return {'new', ARGV[3]}
