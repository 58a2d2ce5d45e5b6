-- The deliveries the record step made for one event (admin). KEYS[1] its
-- delivery set. ARGV[1] delivery hash key prefix. Returns rows as
-- deliveries_list does (the score is the creation time), oldest first. A
-- delivery whose hash expired (delivery_retention) is left out: the set
-- lives dedup_ttl, longer.
local ids = redis.call('SMEMBERS', KEYS[1])
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
