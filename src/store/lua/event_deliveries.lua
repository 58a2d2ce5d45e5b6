-- The deliveries the record step made for one event (admin). KEYS[1] its
-- delivery list (a string of space-separated ids, or a set as earlier builds wrote it). ARGV[1] delivery hash key prefix. Returns rows as
-- deliveries_list does (the score is the creation time), oldest first. A
-- delivery whose hash expired (delivery_retention) is left out: the set
-- lives dedup_ttl, longer.
local ids, t = {}, redis.call('TYPE', KEYS[1]).ok
if t == 'set' then
  ids = redis.call('SMEMBERS', KEYS[1])
elseif t == 'string' then
  for d in string.gmatch(redis.call('GET', KEYS[1]), '%S+') do ids[#ids + 1] = d end
end
local fields = {'event_id', 'webhook', 'state', 'attempts', 'last_status', 'last_error',
  'created_ms', 'due_ms', 'dead_ms', 'delivered_ms', 'last_attempt_ms', 'replayed_as'}
local out = {}
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', ARGV[1] .. id, unpack(fields))
  if f[3] then
    local row = {id, f[7] or '0'}
    for j, name in ipairs(fields) do
      if f[j] then row[#row + 1] = name; row[#row + 1] = f[j] end
    end
    out[#out + 1] = row
  end
end
table.sort(out, function(x, y) return tonumber(x[2]) < tonumber(y[2]) end)
return out
