-- Seed payments fast: clone one real payment record (made by payrelay's own create) many times,
-- with what payrelay's create.lua + finalize.lua would write for each: the record hash, the
-- transaction index entry, the listing's index entries, the gateway reference's entry and, for
-- open payments, the due-set entry. Each clone is created a millisecond
-- before the one before it. Bench only: the keys are not declared (single Redis, never Cluster).
-- ARGV: 1 number of template field/value args (2n), 2 the template's paymentId, 3 'due' | 'final',
--       4…3+2n template pairs, then per payment: paymentId, bucket tag, transactionId,
--       gatewayReference ('': one made like the template's, if it has one), expiresAt (ms; the
--       due score too)
local n = tonumber(ARGV[1])
local template_id = ARGV[2]
local with_due = ARGV[3] == 'due'
local base = {}
local client, url, status, created, template_ref
for i = 4, 3 + n, 2 do
  local name, value = ARGV[i], ARGV[i + 1]
  if name == 'client' then client = value end
  if name == 'paymentUrl' then url = value end
  if name == 'status' then status = value end
  if name == 'createdAt' then created = tonumber(value) end
  if name == 'gatewayReference' then template_ref = value end
  base[#base + 1] = name
  base[#base + 1] = value
end
local count = 0
for i = 4 + n, #ARGV, 5 do
  local pid, tag, txid, ref, expires = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local key = tag .. 'payment:' .. pid
  redis.call('HSET', key, unpack(base))
  local at = string.format('%d', created - count)
  redis.call('HSET', key, 'paymentId', pid, 'transactionId', txid, 'expiresAt', expires, 'createdAt', at)
  -- what the record does not have it leaves out, as create.lua and finalize.lua do (an Alipay
  -- record keeps no paymentUrl: payrelay signs it again from the record)
  -- a clone of a payment with a gateway reference (a Stripe session) gets one of its own, as long
  if ref == '' and template_ref then ref = string.sub(template_ref, 1, #template_ref - #pid) .. pid end
  if ref ~= '' then redis.call('HSET', key, 'gatewayReference', ref) end
  if url then redis.call('HSET', key, 'paymentUrl', (string.gsub(url, template_id, pid))) end
  redis.call('SET', tag .. 'txn:' .. client .. ':' .. txid, pid)
  redis.call('ZADD', tag .. 'index:all:' .. client, at, pid)
  redis.call('ZADD', tag .. 'index:status:' .. status .. ':' .. client, at, pid)
  redis.call('HSET', key, 'openedAt', at)
  if ref ~= '' then redis.call('SET', tag .. 'ref:' .. ref, pid) end
  if with_due then redis.call('ZADD', tag .. 'due', expires, pid) end
  count = count + 1
end
return count
