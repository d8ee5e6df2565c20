-- An entry in a payment's timeline from outside the scripts that change it: an operator's
-- action, a re-send asked for. Nothing when the payment is gone.
-- KEYS: 1 the payment record, 2 its timeline
-- ARGV: 1 now ms, 2 the entry's type, 3… field, value pairs
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local entry = {type = ARGV[2]}
for i = 3, #ARGV, 2 do entry[ARGV[i]] = ARGV[i + 1] end
note(KEYS[2], KEYS[1], ARGV[1], entry)
return 1
