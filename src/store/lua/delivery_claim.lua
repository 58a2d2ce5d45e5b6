-- Claiming due deliveries of one webhook with a lease.
-- KEYS[1] the webhook's due zset. ARGV[1] now (ms), [2] lease end (ms),
-- [3] how many at most, [4] owner (instance id), [5] the delivery hash key
-- prefix. Each claimed delivery's due score becomes the lease end: if this
-- instance dies, the delivery is due again then.
-- Returns {{id, event id, event JSON, attempts}, ...}.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local h = ARGV[5] .. id
  local f = redis.call('HMGET', h, 'event_id', 'event', 'attempts', 'state')
  if f[2] and f[4] == 'pending' then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    redis.call('HSET', h, 'lease_owner', ARGV[4], 'lease_until_ms', ARGV[2])
    out[#out + 1] = {id, f[1], f[2], f[3] or '0'}
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
