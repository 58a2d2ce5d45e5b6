-- Deliveries of one webhook in one set (admin). KEYS[1] the due or dead
-- zset. ARGV[1] how many at most, [2] delivery hash key prefix. Returns
-- {{id, score, field, value, ...}, ...} without the event body.
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
local fields = {'event_id', 'webhook', 'state', 'attempts', 'last_status', 'last_error',
  'created_ms', 'due_ms', 'dead_ms', 'delivered_ms', 'last_attempt_ms', 'lease_owner',
  'replay_of'}
local out = {}
for i = 1, #ids, 2 do
  local f = redis.call('HMGET', ARGV[2] .. ids[i], unpack(fields))
  local row = {ids[i], ids[i + 1]}
  for j, name in ipairs(fields) do
    if f[j] then row[#row + 1] = name; row[#row + 1] = f[j] end
  end
  out[#out + 1] = row
end
return out
