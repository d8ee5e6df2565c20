-- Seed payments fast: clone one real payment record (made by payrelay's own create) many times,
-- with what payrelay's create.lua + finalize.lua would write for each: the record hash, the
-- transaction index entry and, for open payments, the due-set entry. Bench only: the keys are not
-- declared (single Redis, never Cluster).
-- ARGV: 1 number of template field/value args (2n), 2 the template's paymentId, 3 'due' | 'final',
--       4…3+2n template pairs, then per payment: paymentId, bucket tag, transactionId,
--       gatewayReference, expiresAt (ms; the due score too)
local n = tonumber(ARGV[1])
local template_id = ARGV[2]
local with_due = ARGV[3] == 'due'
local base = {}
local client, url
for i = 4, 3 + n, 2 do
  local name, value = ARGV[i], ARGV[i + 1]
  if name == 'client' then client = value end
  if name == 'paymentUrl' then url = value end
  base[#base + 1] = name
  base[#base + 1] = value
end
local count = 0
for i = 4 + n, #ARGV, 5 do
  local pid, tag, txid, ref, expires = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local key = tag .. 'payment:' .. pid
  redis.call('HSET', key, unpack(base))
  redis.call('HSET', key, 'paymentId', pid, 'transactionId', txid, 'gatewayReference', ref,
    'paymentUrl', (string.gsub(url or '', template_id, pid)), 'expiresAt', expires)
  redis.call('SET', tag .. 'txn:' .. client .. ':' .. txid, pid)
  if with_due then redis.call('ZADD', tag .. 'due', expires, pid) end
  count = count + 1
end
return count
