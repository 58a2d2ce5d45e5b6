-- Claiming due deliveries of one webhook with a lease.
-- KEYS[1] the webhook's due zset, [2] the stream, [3] the webhook's dead
-- zset. ARGV[1] now (ms), [2] lease end (ms), [3] how many at most,
-- [4] owner (instance id), [5] the delivery hash key prefix. Each claimed
-- delivery's due score becomes the lease end: if this instance dies, the
-- delivery is due again then. The body is the hash's `event` (a replay, or
-- copied there when the stream trimmed the entry: record.lua), else the
-- event of its stream entry. A pending delivery with neither (the stream
-- was trimmed by hand) cannot be sent: it dies, said so in last_error,
-- rather than vanish.
-- Returns {{id, event id, event JSON, attempts}, ...}.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local h = ARGV[5] .. id
  local f = redis.call('HMGET', h, 'event_id', 'event', 'attempts', 'state', 'stream_id')
  local body = f[2]
  if f[4] == 'pending' and not body and f[5] then
    local r = redis.call('XRANGE', KEYS[2], f[5], f[5])
    if #r > 0 then
      for i = 1, #r[1][2], 2 do
        if r[1][2][i] == 'event' then body = r[1][2][i + 1] end
      end
    end
  end
  if f[4] == 'pending' and body then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    redis.call('HSET', h, 'lease_owner', ARGV[4], 'lease_until_ms', ARGV[2])
    out[#out + 1] = {id, f[1], body, f[3] or '0'}
  elseif f[4] == 'pending' then
    redis.call('HSET', h, 'state', 'dead', 'dead_ms', ARGV[1], 'last_error',
      'the event is no longer kept (the stream trimmed it)')
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZADD', KEYS[3], ARGV[1], id)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
