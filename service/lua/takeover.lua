-- Take over a create whose holder is gone (its lease ran out, or it gave the lease back after a
-- failed gateway call), to ask the gateway what that create made. The same lease as create.lua's
-- 'resume': whoever holds it is the only one talking to the gateway about this create.
-- KEYS: 1 payment record, 2 due zset
-- ARGV: 1 now ms, 2 creating lease ms, 3 paymentId
-- Returns 'taken', 'held' (a live create holds it), or the status when it is no longer creating
-- ('' when the payment is gone: its create was refused meanwhile).
local found = redis.call('HMGET', KEYS[1], 'status', 'creatingUntil')
if found[1] ~= CREATING then return found[1] or '' end
local now = tonumber(ARGV[1])
if tonumber(found[2] or '0') > now then return 'held' end
local lease_until = string.format('%d', now + tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'creatingUntil', lease_until)
schedule(KEYS[2], lease_until, ARGV[3], now)
return 'taken'
