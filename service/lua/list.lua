-- One bucket's part of a listing page (service.listing): the payments of an index (a client's
-- all, or of a status or a flag; scored by createdAt) after a position, newest or oldest first,
-- that pass the filters. Entries whose record is gone (its retention ran out) are dropped.
-- KEYS: 1 the index zset, 2 the prefix of the bucket's payment records (+ paymentId)
-- ARGV: 1 'desc' | 'asc', 2 the position's score ('' = from the start), 3 the position's id
--       (entries at or before the position, in this order, are skipped), 4 created from (ms,
--       inclusive; '' = none), 5 created to (ms, exclusive; '' = none), 6 how many at most,
--       7 how many entries to look at at most, 8… field, value pairs the record must have
-- Returns {done (1: nothing further in this bucket), score, id of the last entry looked at
--          ('' when none), then score, id of each match}
local desc = ARGV[1] == 'desc'
local pos_score, pos_id = tonumber(ARGV[2]), ARGV[3]
local low = ARGV[4] ~= '' and ARGV[4] or '-inf'
local high = ARGV[5] ~= '' and '(' .. ARGV[5] or '+inf'
if pos_score then
  if desc then high = ARGV[2] else low = ARGV[2] end
end
local want, budget = tonumber(ARGV[6]), tonumber(ARGV[7])
local fields, values = {}, {}
for i = 8, #ARGV, 2 do
  fields[#fields + 1] = ARGV[i]
  values[#values + 1] = ARGV[i + 1]
end

local matches, gone = {}, {}
local found, looked, offset, done = 0, 0, 0, false
local last_score, last_id = '', ''
local chunk = math.max(want, 16)
local function look(id, score)
  looked = looked + 1
  last_score, last_id = score, id
  local record = redis.call('HMGET', KEYS[2] .. id, 'paymentId', unpack(fields))
  if not record[1] then
    gone[#gone + 1] = id
    return
  end
  for f = 1, #fields do
    if record[f + 1] ~= values[f] then return end
  end
  found = found + 1
  matches[#matches + 1] = score
  matches[#matches + 1] = id
end
while true do
  local page
  if desc then
    page = redis.call('ZREVRANGEBYSCORE', KEYS[1], high, low, 'WITHSCORES', 'LIMIT', offset, chunk)
  else
    page = redis.call('ZRANGEBYSCORE', KEYS[1], low, high, 'WITHSCORES', 'LIMIT', offset, chunk)
  end
  offset = offset + chunk
  local i = 1
  while i <= #page and found < want and looked < budget do
    local id, score = page[i], page[i + 1]
    local at_position = pos_score and tonumber(score) == pos_score
    if not (at_position and (desc and id >= pos_id or not desc and id <= pos_id)) then look(id, score) end
    i = i + 2
  end
  if i > #page and #page < chunk * 2 then
    done = true  -- the index has nothing further in range
    break
  end
  if found >= want or looked >= budget then break end
end
for _, id in ipairs(gone) do redis.call('ZREM', KEYS[1], id) end
local reply = {done and 1 or 0, last_score, last_id}
for _, item in ipairs(matches) do reply[#reply + 1] = item end
return reply
